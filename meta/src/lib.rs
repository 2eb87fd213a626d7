//! gala-gopher's data model: meta files and their libconfig syntax, the table registry,
//! and the codec of the record, event and histogram text that probes write.
//!
//! ```
//! use gala_meta::{classify, parse_meta_file, Line, MetaLimits, Registry};
//!
//! let src = r#"version = "1.0.0";
//! measurements: ({ table_name: "tcp"; entity_name: "tcp_link";
//!     fields: ({ name: "tgid"; type: "key"; }, { name: "rx"; type: "gauge"; }, ); }, );"#;
//! let tables = parse_meta_file("tcp.meta".as_ref(), src, &MetaLimits::default())?;
//! let mut registry = Registry::new();
//! registry.add_tables(tables)?;
//!
//! let Ok(Line::Record(record)) = classify(b"|tcp|42|1.5|") else { unreachable!() };
//! let id = registry.lookup(record.table).expect("known table");
//! let mut values = Vec::new();
//! record.split_values(registry.table(id), &mut values)?;
//! assert_eq!(values, [&b"42"[..], &b"1.5"[..]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod histogram;
pub mod libconfig;
pub mod model;
pub mod number;
pub mod record;
pub mod registry;
pub mod scan;
pub mod text;

pub use error::MetaError;
pub use histogram::{Histogram, HistogramError};
pub use libconfig::SyntaxError;
pub use model::{parse_meta_file, Field, FieldType, MetaLimits, TableMeta};
pub use number::is_number;
pub use record::{classify, is_null, parse_event, EventLine, Line, RecordError, RecordLine};
pub use registry::{custom_meta_path, Registry, TableId};
pub use text::{read_text, TextError};
