//! The table registry: all loaded meta tables, looked up by name on the record hot path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::MetaError;
use crate::model::{parse_meta_file, MetaLimits, TableMeta};

/// Index of a table in a [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub u32);

/// All known tables; built at startup, then shared read-only.
#[derive(Debug, Default)]
pub struct Registry {
    tables: Vec<TableMeta>,
    by_name: hashbrown::HashMap<Box<[u8]>, TableId>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every regular file of `dir` whose name ends with `.meta` and does not start
    /// with `.`, in name order. Returns the number of tables added.
    pub fn load_dir(&mut self, dir: &Path, limits: &MetaLimits) -> Result<usize, MetaError> {
        let io = |source| MetaError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".meta") {
                continue;
            }
            let path = entry.path();
            // Follows symlinks; directories and other non-files are skipped.
            let meta = std::fs::metadata(&path).map_err(|source| MetaError::Io {
                path: path.clone(),
                source,
            })?;
            if meta.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut added = 0;
        for path in paths {
            added += self.load_file(&path, limits)?;
        }
        Ok(added)
    }

    /// Loads one meta file. Returns the number of tables added.
    pub fn load_file(&mut self, path: &Path, limits: &MetaLimits) -> Result<usize, MetaError> {
        let src = crate::text::read_text(path).map_err(|e| match e {
            crate::TextError::Io(source) => MetaError::Io {
                path: path.to_owned(),
                source,
            },
            crate::TextError::NotUtf8 { line, column } => MetaError::Syntax {
                path: path.to_owned(),
                line,
                message: format!("not valid UTF-8 (byte {column} of the line)"),
            },
        })?;
        let tables = parse_meta_file(path, &src, limits)?;
        let n = tables.len();
        self.add_tables(tables)?;
        Ok(n)
    }

    /// Adds tables; on a duplicate name (with an existing table or within `tables`) nothing
    /// is added.
    pub fn add_tables(&mut self, tables: Vec<TableMeta>) -> Result<(), MetaError> {
        let mut batch: HashMap<&str, &TableMeta> = HashMap::with_capacity(tables.len());
        for t in &tables {
            let first = self
                .by_name
                .get(t.name.as_bytes())
                .map(|id| self.table(*id))
                .or_else(|| batch.get(t.name.as_str()).copied());
            if let Some(first) = first {
                return Err(MetaError::DuplicateTable {
                    name: t.name.clone(),
                    first: (first.source.clone(), first.line),
                    second: (t.source.clone(), t.line),
                });
            }
            batch.insert(&t.name, t);
        }
        if self.tables.len() + tables.len() > u32::MAX as usize {
            return Err(MetaError::TooManyTables {
                max: u32::MAX as usize,
            });
        }
        for t in tables {
            let id = TableId(self.tables.len() as u32);
            self.by_name.insert(t.name.as_bytes().into(), id);
            self.tables.push(t);
        }
        Ok(())
    }

    /// Fails when more than `max` tables are loaded.
    pub fn check_max_tables(&self, max: usize) -> Result<(), MetaError> {
        if self.tables.len() > max {
            return Err(MetaError::TooManyTables { max });
        }
        Ok(())
    }

    /// The table called `name` (the raw bytes of a record line).
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<TableId> {
        self.by_name.get(name).copied()
    }

    /// The table with id `id`.
    ///
    /// # Panics
    /// If `id` was not handed out by this registry.
    pub fn table(&self, id: TableId) -> &TableMeta {
        &self.tables[id.0 as usize]
    }

    /// Number of tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// True when no table is loaded.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// All tables in load order.
    pub fn iter(&self) -> impl Iterator<Item = (TableId, &TableMeta)> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| (TableId(i as u32), t))
    }

    /// Cross-table checks per entity (docs/reference/meta-and-records.md §1.5), as warnings: tables of one entity should
    /// have the same key set, and metric names should be unique across the entity.
    pub fn entity_warnings(&self) -> Vec<String> {
        let mut by_entity: BTreeMap<&str, Vec<&TableMeta>> = BTreeMap::new();
        for t in &self.tables {
            by_entity.entry(&t.entity).or_default().push(t);
        }
        let mut warnings = Vec::new();
        for (entity, tables) in by_entity {
            let [first, rest @ ..] = tables.as_slice() else {
                continue;
            };
            let first_keys = sorted_keys(first);
            for t in rest {
                let keys = sorted_keys(t);
                if keys != first_keys {
                    warnings.push(format!(
                        "{}:{}: entity \"{entity}\": table \"{}\" has keys [{}] but table \"{}\" ({}:{}) has [{}]",
                        t.source.display(),
                        t.line,
                        t.name,
                        keys.join(", "),
                        first.name,
                        first.source.display(),
                        first.line,
                        first_keys.join(", "),
                    ));
                }
            }
            let mut metric_owner: HashMap<&str, &TableMeta> = HashMap::new();
            for t in &tables {
                for f in t.fields.iter().filter(|f| f.ty.is_metric()) {
                    match metric_owner.get(f.name.as_str()) {
                        Some(owner) => warnings.push(format!(
                            "{}:{}: entity \"{entity}\": metric \"{}\" of table \"{}\" is also defined by table \"{}\" ({}:{})",
                            t.source.display(),
                            t.line,
                            f.name,
                            t.name,
                            owner.name,
                            owner.source.display(),
                            owner.line,
                        )),
                        None => {
                            metric_owner.insert(&f.name, t);
                        }
                    }
                }
            }
        }
        warnings
    }
}

fn sorted_keys(t: &TableMeta) -> Vec<&str> {
    let mut keys: Vec<&str> = t
        .key_idx
        .iter()
        .map(|&i| t.fields[i].name.as_str())
        .collect();
    keys.sort_unstable();
    keys
}

/// The meta file of a custom probe binary: the file name cut at its last `.` plus `.meta`,
/// or `.meta` appended when the file name has no `.` (docs/reference/meta-and-records.md §1.1).
pub fn custom_meta_path(bin: &Path) -> PathBuf {
    let with_suffix = |base: &Path| {
        let mut s = base.as_os_str().to_owned();
        s.push(".meta");
        PathBuf::from(s)
    };
    let Some(name) = bin.file_name() else {
        return with_suffix(bin);
    };
    match name.to_str() {
        Some(name) => match name.rfind('.') {
            Some(dot) => bin.with_file_name(format!("{}.meta", &name[..dot])),
            None => with_suffix(bin),
        },
        // Not UTF-8: fall back to std's extension handling.
        None => bin.with_extension("meta"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, FieldType};
    use std::fs;

    /// `(table, entity, [(field, type)])`.
    type TableSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn meta(tables: &[TableSpec<'_>]) -> String {
        let mut s = String::from("version = \"1.0.0\";\nmeasurements = (\n");
        for (name, entity, fields) in tables {
            s.push_str(&format!(
                "{{ table_name = \"{name}\"; entity_name = \"{entity}\"; fields = (\n"
            ));
            for (f, ty) in *fields {
                s.push_str(&format!("{{ name = \"{f}\"; type = \"{ty}\"; }},\n"));
            }
            s.push_str("); },\n");
        }
        s.push_str(");\n");
        s
    }

    fn table(name: &str, entity: &str, fields: &[(&str, FieldType)]) -> TableMeta {
        let fields = fields.iter().map(|&(n, ty)| Field::new(n, ty)).collect();
        TableMeta::new(name, entity, "1", fields, format!("{name}.meta"), 3)
    }

    #[test]
    fn load_dir_filters_and_sorts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("b.meta"), meta(&[("tb", "e", &[("k", "key")])])).expect("write");
        fs::write(
            d.join("a.meta"),
            meta(&[("ta1", "e", &[("k", "key")]), ("ta2", "e", &[("k", "key")])]),
        )
        .expect("write");
        // Ignored: backup copies, hidden files, other names, directories.
        fs::write(d.join("b.meta.bak"), "garbage").expect("write");
        fs::write(d.join(".hidden.meta"), "garbage").expect("write");
        fs::write(d.join("readme.txt"), "garbage").expect("write");
        fs::create_dir(d.join("dir.meta")).expect("mkdir");

        let mut reg = Registry::new();
        assert!(reg.is_empty());
        let n = reg.load_dir(d, &MetaLimits::default()).expect("loads");
        assert_eq!(n, 3);
        assert_eq!(reg.len(), 3);
        let names: Vec<_> = reg.iter().map(|(_, t)| t.name.as_str()).collect();
        assert_eq!(names, ["ta1", "ta2", "tb"]);
        let id = reg.lookup(b"tb").expect("tb");
        assert_eq!(id, TableId(2));
        assert_eq!(reg.table(id).source, d.join("b.meta"));
        assert_eq!(reg.lookup(b"nope"), None);
        assert_eq!(reg.lookup(b"t"), None);
        assert!(reg.check_max_tables(3).is_ok());
        assert!(matches!(
            reg.check_max_tables(2),
            Err(MetaError::TooManyTables { max: 2 })
        ));
    }

    #[test]
    fn duplicate_across_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("a.meta"), meta(&[("t", "e", &[("k", "key")])])).expect("write");
        fs::write(
            d.join("b.meta"),
            meta(&[("u", "e", &[("k", "key")]), ("t", "e", &[("k", "key")])]),
        )
        .expect("write");
        let mut reg = Registry::new();
        let e = reg
            .load_dir(d, &MetaLimits::default())
            .expect_err("duplicate");
        match &e {
            MetaError::DuplicateTable {
                name,
                first,
                second,
            } => {
                assert_eq!(name, "t");
                assert_eq!(first, &(d.join("a.meta"), 3));
                assert_eq!(second, &(d.join("b.meta"), 6));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The failing file added nothing.
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.lookup(b"u"), None);
    }

    #[test]
    fn duplicate_within_batch() {
        let mut reg = Registry::new();
        let e = reg
            .add_tables(vec![
                table("t", "e", &[("k", FieldType::Key)]),
                table("t", "e", &[("k", FieldType::Key)]),
            ])
            .expect_err("duplicate");
        assert!(matches!(e, MetaError::DuplicateTable { .. }));
        assert!(reg.is_empty());
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let mut reg = Registry::new();
        let e = reg
            .load_dir(&missing, &MetaLimits::default())
            .expect_err("missing dir");
        assert!(e.to_string().starts_with(&missing.display().to_string()));
        let e = reg
            .load_file(&missing.join("x.meta"), &MetaLimits::default())
            .expect_err("missing file");
        assert!(matches!(e, MetaError::Io { .. }));
        let bad = dir.path().join("bad.meta");
        fs::write(&bad, "version = ").expect("write");
        let e = reg
            .load_file(&bad, &MetaLimits::default())
            .expect_err("syntax");
        assert!(matches!(e, MetaError::Syntax { .. }));
    }

    #[test]
    fn entity_warnings_report_mismatches() {
        use FieldType::*;
        let mut reg = Registry::new();
        reg.add_tables(vec![
            table("a", "tcp", &[("tgid", Key), ("role", Key), ("rx", Gauge)]),
            table("b", "tcp", &[("role", Key), ("tgid", Key), ("tx", Gauge)]),
            table("c", "tcp", &[("tgid", Key), ("rx", Counter)]),
            table("d", "proc", &[("tgid", Key), ("rx", Gauge)]),
        ])
        .expect("adds");
        let w = reg.entity_warnings();
        assert_eq!(w.len(), 2, "{w:#?}");
        assert_eq!(
            w[0],
            "c.meta:3: entity \"tcp\": table \"c\" has keys [tgid] but table \"a\" (a.meta:3) has [role, tgid]"
        );
        assert_eq!(
            w[1],
            "c.meta:3: entity \"tcp\": metric \"rx\" of table \"c\" is also defined by table \"a\" (a.meta:3)"
        );
    }

    #[test]
    fn custom_meta_paths() {
        let cases = [
            ("/opt/probe/custom.bin", "/opt/probe/custom.meta"),
            ("/opt/probe/custom", "/opt/probe/custom.meta"),
            ("/opt/pro.be/custom", "/opt/pro.be/custom.meta"),
            ("/opt/probe/a.b.c", "/opt/probe/a.b.meta"),
            ("/opt/probe/x.", "/opt/probe/x.meta"),
            ("relative.sh", "relative.meta"),
            ("/", "/.meta"),
        ];
        for (bin, want) in cases {
            assert_eq!(
                custom_meta_path(Path::new(bin)),
                PathBuf::from(want),
                "{bin}"
            );
        }
    }

    #[test]
    fn registry_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Registry>();
    }
}
