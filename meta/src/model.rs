//! The meta model: tables and fields described by `.meta` files, and their validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::MetaError;
use crate::libconfig::{self, Group, Node, Value};

/// Longest table, entity or field name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Hard cap on the number of fields of one table (the original's `MAX_METRICS_NUM`).
pub const MAX_FIELDS_HARD_CAP: usize = 128;

/// Table names reserved for the event and log wire lines.
pub const RESERVED_TABLE_NAMES: [&str; 2] = ["event", "log"];

/// The `type` of a meta field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// A label that identifies the series; at least one per table.
    Key,
    /// A descriptive label.
    Label,
    /// A Prometheus gauge.
    Gauge,
    /// A Prometheus counter.
    Counter,
    /// A histogram column (see [`crate::histogram`]).
    Histogram,
    /// Rendered like a gauge (undocumented in the original).
    Summary,
}

impl FieldType {
    /// All types, in the order used in messages.
    pub const ALL: [FieldType; 6] = [
        FieldType::Key,
        FieldType::Label,
        FieldType::Gauge,
        FieldType::Counter,
        FieldType::Histogram,
        FieldType::Summary,
    ];

    /// True for `key` and `label`: rendered as labels.
    pub fn is_label(self) -> bool {
        matches!(self, FieldType::Key | FieldType::Label)
    }

    /// True for value columns: gauge, counter, histogram, summary.
    pub fn is_metric(self) -> bool {
        !self.is_label()
    }

    /// The name used in meta files.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Key => "key",
            FieldType::Label => "label",
            FieldType::Gauge => "gauge",
            FieldType::Counter => "counter",
            FieldType::Histogram => "histogram",
            FieldType::Summary => "summary",
        }
    }

    /// Parses a meta-file type name (exact, lower case).
    pub fn from_name(name: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Label name or metric suffix.
    pub name: String,
    /// Free text; empty when the meta file has none.
    pub description: String,
    /// How the column is rendered.
    pub ty: FieldType,
}

impl Field {
    /// A field without description (tables built in code rather than read from a meta file).
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        Field {
            name: name.into(),
            description: String::new(),
            ty,
        }
    }
}

/// One measurement (table) of a meta file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The table name, the first column of record lines.
    pub name: String,
    /// The entity name used in metric names (`gala_gopher_<entity>_<field>`).
    pub entity: String,
    /// The `version` of the meta file.
    pub version: String,
    /// The columns, in record order.
    pub fields: Vec<Field>,
    /// The meta file the table was loaded from.
    pub source: PathBuf,
    /// 1-based line of the table's group in `source`.
    pub line: u32,
    /// Indexes of the `key` fields, in meta order.
    pub key_idx: Vec<usize>,
}

impl TableMeta {
    /// The table of `fields`, with [`key_idx`](Self::key_idx) derived from their types (the
    /// only place that derives it). A meta file's table needs at least one key; that check is
    /// the parser's.
    pub fn new(
        name: impl Into<String>,
        entity: impl Into<String>,
        version: impl Into<String>,
        fields: Vec<Field>,
        source: impl Into<PathBuf>,
        line: u32,
    ) -> Self {
        let key_idx = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.ty == FieldType::Key)
            .map(|(i, _)| i)
            .collect();
        TableMeta {
            name: name.into(),
            entity: entity.into(),
            version: version.into(),
            fields,
            source: source.into(),
            line,
            key_idx,
        }
    }

    /// True when a key or label field is named `tgid` (any case): the table describes processes.
    pub fn is_process_level(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.ty.is_label() && f.name.eq_ignore_ascii_case("tgid"))
    }

    /// Index of the field called `name` (exact match).
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// True when the table has its own `comm` field (exact name, any type).
    pub fn has_comm(&self) -> bool {
        self.field_index("comm").is_some()
    }

    /// Index of the key or label field named `container_id` (any case).
    pub fn container_id_idx(&self) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.ty.is_label() && f.name.eq_ignore_ascii_case("container_id"))
    }
}

/// Limits applied while loading meta files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaLimits {
    /// Most fields one table may have (`imdb.max_metrics_num`; callers clamp to
    /// [`MAX_FIELDS_HARD_CAP`]).
    pub max_fields: usize,
}

impl Default for MetaLimits {
    fn default() -> Self {
        MetaLimits {
            max_fields: MAX_FIELDS_HARD_CAP,
        }
    }
}

/// True when `name` can be a Prometheus label or metric-name part: `[a-zA-Z_][a-zA-Z0-9_]*`,
/// 1..=[`MAX_NAME_LEN`] bytes.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.len() <= MAX_NAME_LEN && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Parses and validates one meta file. `path` is used for `source` and error messages only.
pub fn parse_meta_file(
    path: &Path,
    src: &str,
    limits: &MetaLimits,
) -> Result<Vec<TableMeta>, MetaError> {
    let root = libconfig::parse(src).map_err(|e| MetaError::Syntax {
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    let cx = Cx { path, table: None };
    let version = cx.req_str(&root, "version", 1)?.to_owned();
    let measurements = cx.req(&root, "measurements", 1)?;
    let Value::List(items) = &measurements.value else {
        return Err(cx.invalid(
            measurements.line,
            format!(
                "\"measurements\" must be a list, not a {}",
                measurements.value.type_name()
            ),
        ));
    };
    items
        .iter()
        .map(|node| parse_table(path, node, &version, limits))
        .collect()
}

/// Error context: the file and, once known, the table.
struct Cx<'a> {
    path: &'a Path,
    table: Option<&'a str>,
}

impl Cx<'_> {
    fn invalid(&self, line: u32, message: impl Into<String>) -> MetaError {
        MetaError::Invalid {
            path: self.path.to_owned(),
            line,
            table: self.table.map(str::to_owned),
            message: message.into(),
        }
    }

    /// A required setting of `group` (which starts on `line`).
    fn req<'g>(&self, group: &'g Group, name: &str, line: u32) -> Result<&'g Node, MetaError> {
        group
            .get(name)
            .map(|s| &s.value)
            .ok_or_else(|| self.invalid(line, format!("missing required setting \"{name}\"")))
    }

    /// A required string setting.
    fn req_str<'g>(&self, group: &'g Group, name: &str, line: u32) -> Result<&'g str, MetaError> {
        let node = self.req(group, name, line)?;
        self.as_str(node, name)
    }

    fn as_str<'g>(&self, node: &'g Node, name: &str) -> Result<&'g str, MetaError> {
        node.value.as_str().ok_or_else(|| {
            self.invalid(
                node.line,
                format!(
                    "\"{name}\" must be a string, not a {}",
                    node.value.type_name()
                ),
            )
        })
    }

    /// Checks a table, entity or field name.
    fn name(&self, what: &str, name: &str, line: u32) -> Result<(), MetaError> {
        if name.len() > MAX_NAME_LEN {
            return Err(self.invalid(
                line,
                format!(
                    "{what} \"{name}\" is {} bytes long, more than {MAX_NAME_LEN}",
                    name.len()
                ),
            ));
        }
        if !is_valid_name(name) {
            return Err(self.invalid(
                line,
                format!("{what} \"{name}\" is not a valid name (expected [a-zA-Z_][a-zA-Z0-9_]*)"),
            ));
        }
        Ok(())
    }
}

fn parse_table(
    path: &Path,
    node: &Node,
    version: &str,
    limits: &MetaLimits,
) -> Result<TableMeta, MetaError> {
    let mut cx = Cx { path, table: None };
    let Value::Group(group) = &node.value else {
        return Err(cx.invalid(
            node.line,
            format!(
                "each measurement must be a group, not a {}",
                node.value.type_name()
            ),
        ));
    };
    let name = cx.req_str(group, "table_name", node.line)?;
    let name_line = group.get("table_name").map_or(node.line, |s| s.line);
    cx.name("table name", name, name_line)?;
    if RESERVED_TABLE_NAMES.contains(&name) {
        return Err(cx.invalid(
            name_line,
            format!("table name \"{name}\" is reserved for {name} lines"),
        ));
    }
    cx.table = Some(name);
    let entity = cx.req_str(group, "entity_name", node.line)?;
    let entity_line = group.get("entity_name").map_or(node.line, |s| s.line);
    cx.name("entity name", entity, entity_line)?;

    let fields_node = cx.req(group, "fields", node.line)?;
    let Value::List(items) = &fields_node.value else {
        return Err(cx.invalid(
            fields_node.line,
            format!(
                "\"fields\" must be a list, not a {}",
                fields_node.value.type_name()
            ),
        ));
    };
    if items.is_empty() {
        return Err(cx.invalid(fields_node.line, "\"fields\" is empty"));
    }
    if items.len() > limits.max_fields {
        return Err(cx.invalid(
            fields_node.line,
            format!(
                "{} fields, more than the limit of {} (imdb.max_metrics_num)",
                items.len(),
                limits.max_fields
            ),
        ));
    }

    let mut fields = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        let field = parse_field(&cx, item)?;
        if !seen.insert(field.name.clone()) {
            return Err(cx.invalid(item.line, format!("duplicate field \"{}\"", field.name)));
        }
        fields.push(field);
    }
    let table = TableMeta::new(name, entity, version, fields, path, node.line);
    if table.key_idx.is_empty() {
        return Err(cx.invalid(
            node.line,
            "no field of type \"key\" (at least one is required)",
        ));
    }
    Ok(table)
}

fn parse_field(cx: &Cx<'_>, node: &Node) -> Result<Field, MetaError> {
    let Value::Group(group) = &node.value else {
        return Err(cx.invalid(
            node.line,
            format!(
                "each field must be a group, not a {}",
                node.value.type_name()
            ),
        ));
    };
    let name = cx.req_str(group, "name", node.line)?;
    let name_line = group.get("name").map_or(node.line, |s| s.line);
    cx.name("field name", name, name_line)?;
    let type_node = cx
        .req(group, "type", node.line)
        .map_err(|_| cx.invalid(node.line, format!("field \"{name}\" has no \"type\"")))?;
    let type_name = cx.as_str(type_node, "type")?;
    let ty = FieldType::from_name(type_name).ok_or_else(|| {
        let expected: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
        cx.invalid(
            type_node.line,
            format!(
                "field \"{name}\" has unknown type \"{type_name}\" (expected {})",
                expected.join(", ")
            ),
        )
    })?;
    let description = match group.get("description") {
        Some(s) => cx.as_str(&s.value, "description")?.to_owned(),
        None => String::new(),
    };
    Ok(Field {
        name: name.to_owned(),
        description,
        ty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shaped like the shipped `tcp.meta`: comments, `name:` and `name =`, trailing commas.
    pub(crate) const TCP_META: &str = r#"version = "1.0.0"

measurements:
(
    {
        table_name: "tcp_tx_rx",
        entity_name: "tcp_link",
        fields:
        (
            {
                description: "id of process",
                type: "key",
                name: "tgid",
            },
            {
                description: "role",
                type: "key",
                name: "role",
            },
            {
                description: "client ip",
                type: "label",
                name: "client_ip",
            },
            {   description: "rx bytes", type: "gauge", name: "rx_bytes", },
            {   description: "tx bytes"; type: "counter"; name: "tx_bytes"; },
            // an undocumented type
            {   type: "summary"; name: "segs_summary"; },
            /* histogram column */
            {   description: "srtt"; type = "histogram"; name = "srtt"; },
        ),
    },
    {
        table_name: "tcp_abn",
        entity_name: "tcp_link",
        fields:
        (
            { description: "id of process", type: "key", name: "tgid", },
            { description: "role", type: "key", name: "role", },
            { description: "retrans", type: "gauge", name: "retran_packets", },
        ),
    },
)
"#;

    fn path() -> &'static Path {
        Path::new("/opt/gala-gopher/meta/tcp.meta")
    }

    fn load(src: &str) -> Result<Vec<TableMeta>, MetaError> {
        parse_meta_file(path(), src, &MetaLimits::default())
    }

    fn invalid(src: &str) -> String {
        match load(src) {
            Err(e @ MetaError::Invalid { .. }) => e.to_string(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// A one-table meta with the given fields body.
    fn with_fields(fields: &str) -> String {
        format!(
            "version = \"1\";\nmeasurements: (\n{{ table_name: \"t\"; entity_name: \"e\";\nfields: (\n{fields}\n); }}\n);\n"
        )
    }

    #[test]
    fn shipped_style_tcp_meta() {
        let tables = load(TCP_META).expect("loads");
        assert_eq!(tables.len(), 2);
        let t = &tables[0];
        assert_eq!(t.name, "tcp_tx_rx");
        assert_eq!(t.entity, "tcp_link");
        assert_eq!(t.version, "1.0.0");
        assert_eq!(t.source, path());
        assert_eq!(t.line, 5);
        assert_eq!(t.key_idx, vec![0, 1]);
        let types: Vec<_> = t.fields.iter().map(|f| f.ty).collect();
        assert_eq!(
            types,
            [
                FieldType::Key,
                FieldType::Key,
                FieldType::Label,
                FieldType::Gauge,
                FieldType::Counter,
                FieldType::Summary,
                FieldType::Histogram
            ]
        );
        assert_eq!(t.fields[0].description, "id of process");
        assert_eq!(t.fields[5].description, "");
        assert!(t.is_process_level());
        assert!(!t.has_comm());
        assert_eq!(t.field_index("srtt"), Some(6));
        assert_eq!(t.container_id_idx(), None);
        assert_eq!(tables[1].name, "tcp_abn");
        assert_eq!(tables[1].line, 33);
    }

    #[test]
    fn field_type_helpers() {
        for t in FieldType::ALL {
            assert_eq!(FieldType::from_name(t.as_str()), Some(t));
            assert_ne!(t.is_label(), t.is_metric());
        }
        assert!(FieldType::Key.is_label() && FieldType::Label.is_label());
        assert_eq!(FieldType::from_name("Key"), None);
        assert_eq!(FieldType::Histogram.to_string(), "histogram");
    }

    #[test]
    fn process_level_detection() {
        let tables = load(&with_fields(
            "{ type: \"key\"; name: \"TGID\"; }, { type: \"gauge\"; name: \"comm\"; }, { type: \"label\"; name: \"Container_ID\"; }",
        ))
        .expect("loads");
        assert!(tables[0].is_process_level());
        assert!(tables[0].has_comm());
        assert_eq!(tables[0].container_id_idx(), Some(2));
        let tables = load(&with_fields(
            "{ type: \"key\"; name: \"pid\"; }, { type: \"gauge\"; name: \"tgid\"; }",
        ))
        .expect("loads");
        assert!(!tables[0].is_process_level());
    }

    #[test]
    fn empty_measurements_are_fine() {
        assert_eq!(
            load("version = \"1\"; measurements = ();")
                .map(|t| t.len())
                .ok(),
            Some(0)
        );
    }

    #[test]
    fn unknown_settings_are_ignored() {
        let src = "version = \"1\"; extra = 5; measurements = ({ table_name = \"t\"; entity_name = \"e\"; x = [1]; fields = ({ name = \"k\"; type = \"key\"; unit = \"s\"; }); });";
        assert_eq!(load(src).map(|t| t.len()).ok(), Some(1));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e =
            load("version = \"1\";\nmeasurements = (\n{ table_name = }\n);").expect_err("fails");
        assert!(matches!(e, MetaError::Syntax { line: 3, .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("/opt/gala-gopher/meta/tcp.meta:3: "),
            "{e}"
        );
    }

    #[test]
    fn top_level_errors() {
        assert_eq!(
            invalid("measurements = ();"),
            "/opt/gala-gopher/meta/tcp.meta:1: missing required setting \"version\""
        );
        assert!(invalid("version = 1; measurements = ();")
            .contains("\"version\" must be a string, not a int"));
        assert!(invalid("version = \"1\";").contains("missing required setting \"measurements\""));
        assert!(invalid("version = \"1\";\nmeasurements = { };")
            .contains(":2: \"measurements\" must be a list, not a group"));
        assert!(invalid("version = \"1\";\nmeasurements = ( 1 );")
            .contains(":2: each measurement must be a group"));
    }

    #[test]
    fn table_errors() {
        let e =
            invalid("version = \"1\";\nmeasurements = (\n{ entity_name = \"e\"; fields = (); });");
        assert_eq!(
            e,
            "/opt/gala-gopher/meta/tcp.meta:3: missing required setting \"table_name\""
        );
        let e =
            invalid("version = \"1\";\nmeasurements = (\n{ table_name = \"t\"; fields = (); });");
        assert_eq!(e, "/opt/gala-gopher/meta/tcp.meta:3: table \"t\": missing required setting \"entity_name\"");
        let e = invalid(
            "version = \"1\";\nmeasurements = (\n{ table_name = \"t\"; entity_name = \"e\"; });",
        );
        assert!(
            e.contains("table \"t\": missing required setting \"fields\""),
            "{e}"
        );
        let e = invalid("version = \"1\";\nmeasurements = (\n{ table_name = \"t\"; entity_name = \"e\"; fields = {}; });");
        assert!(e.contains("\"fields\" must be a list, not a group"), "{e}");
        let e = invalid(&with_fields(""));
        assert!(e.contains("table \"t\": \"fields\" is empty"), "{e}");
        let e = invalid(&with_fields("1"));
        assert!(e.contains("each field must be a group, not a int"), "{e}");
    }

    #[test]
    fn reserved_and_invalid_names() {
        for reserved in ["event", "log"] {
            let src = format!("version = \"1\"; measurements = ({{ table_name = \"{reserved}\"; entity_name = \"e\"; fields = ({{ name = \"k\"; type = \"key\"; }}); }});");
            assert!(invalid(&src).contains("is reserved"), "{reserved}");
        }
        let bad_table = "version = \"1\"; measurements = ({ table_name = \"tcp-link\"; entity_name = \"e\"; fields = ({ name = \"k\"; type = \"key\"; }); });";
        assert!(invalid(bad_table).contains("table name \"tcp-link\" is not a valid name"));
        let bad_entity = "version = \"1\"; measurements = ({ table_name = \"t\"; entity_name = \"9e\"; fields = ({ name = \"k\"; type = \"key\"; }); });";
        assert!(invalid(bad_entity).contains("table \"t\": entity name \"9e\" is not a valid name"));
        let e = invalid(&with_fields("{ name = \"a b\"; type = \"key\"; }"));
        assert!(e.contains("field name \"a b\" is not a valid name"), "{e}");
        let e = invalid(&with_fields("{ name = \"\"; type = \"key\"; }"));
        assert!(e.contains("field name \"\" is not a valid name"), "{e}");
        let long = "x".repeat(64);
        let e = invalid(&with_fields(&format!(
            "{{ name = \"{long}\"; type = \"key\"; }}"
        )));
        assert!(e.contains("is 64 bytes long, more than 63"), "{e}");
        let ok = "x".repeat(63);
        assert!(load(&with_fields(&format!(
            "{{ name = \"{ok}\"; type = \"key\"; }}"
        )))
        .is_ok());
        assert!(
            is_valid_name("_a1")
                && is_valid_name("A")
                && !is_valid_name("a.b")
                && !is_valid_name("ü")
        );
    }

    #[test]
    fn field_errors() {
        let e = invalid(&with_fields("{ type = \"key\"; }"));
        assert_eq!(
            e,
            "/opt/gala-gopher/meta/tcp.meta:5: table \"t\": missing required setting \"name\""
        );
        let e = invalid(&with_fields("{ name = \"k\"; }"));
        assert_eq!(
            e,
            "/opt/gala-gopher/meta/tcp.meta:5: table \"t\": field \"k\" has no \"type\""
        );
        let e = invalid(&with_fields("{ name = \"k\";\n type = \"foo\"; }"));
        assert_eq!(
            e,
            "/opt/gala-gopher/meta/tcp.meta:6: table \"t\": field \"k\" has unknown type \"foo\" (expected key, label, gauge, counter, histogram, summary)"
        );
        let e = invalid(&with_fields("{ name = \"k\"; type = 3; }"));
        assert!(e.contains("\"type\" must be a string, not a int"), "{e}");
        let e = invalid(&with_fields(
            "{ name = \"k\"; type = \"key\"; description = 1; }",
        ));
        assert!(e.contains("\"description\" must be a string"), "{e}");
        let e = invalid(&with_fields(
            "{ name = \"k\"; type = \"key\"; },\n{ name = \"k\"; type = \"gauge\"; }",
        ));
        assert_eq!(
            e,
            "/opt/gala-gopher/meta/tcp.meta:6: table \"t\": duplicate field \"k\""
        );
        let e = invalid(&with_fields("{ name = \"k\"; type = \"label\"; }"));
        assert_eq!(e, "/opt/gala-gopher/meta/tcp.meta:3: table \"t\": no field of type \"key\" (at least one is required)");
    }

    #[test]
    fn field_limit() {
        let fields: Vec<String> = (0..5)
            .map(|i| format!("{{ name = \"f{i}\"; type = \"key\"; }}"))
            .collect();
        let src = with_fields(&fields.join(",\n"));
        assert!(parse_meta_file(path(), &src, &MetaLimits { max_fields: 5 }).is_ok());
        let e = parse_meta_file(path(), &src, &MetaLimits { max_fields: 4 }).expect_err("too many");
        assert!(
            e.to_string().contains("5 fields, more than the limit of 4"),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_mutated_meta(pos in 0usize..TCP_META.len(), len in 0usize..16, ins in "[{}(),;:=\"a-z_ \n]{0,6}") {
            let mut s = TCP_META.to_owned();
            let end = (pos + len).min(s.len());
            s.replace_range(pos..end, &ins);
            match load(&s) {
                Ok(tables) => {
                    for t in &tables {
                        prop_assert!(!t.key_idx.is_empty());
                        prop_assert!(is_valid_name(&t.name) && is_valid_name(&t.entity));
                        prop_assert!(t.fields.iter().all(|f| is_valid_name(&f.name)));
                        prop_assert!(t.key_idx.iter().all(|&i| t.fields[i].ty == FieldType::Key));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("/opt/gala-gopher/meta/tcp.meta:"), "{}", msg);
                }
            }
        }

        #[test]
        fn never_panics_on_random_text(s in "\\PC{0,300}") {
            let _ = load(&s);
        }
    }
}
