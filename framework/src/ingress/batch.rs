//! A batch of validated records passed from a probe's validator to its writer.

use gala_meta::TableId;

/// One validated record inside a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct Item {
    table: TableId,
    key_len: u32,
    line_len: u32,
}

/// Validated records, each stored as its key followed by its record line, back to back.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    items: Vec<Item>,
    /// When the records were read, in milliseconds of [`crate::clock`].
    pub now_ms: u64,
}

impl Batch {
    /// Appends a record: `key` (see [`crate::imdb::push_key`]) is written by `write_key`
    /// into the batch, then `line` is copied after it.
    pub fn push(&mut self, table: TableId, write_key: impl FnOnce(&mut Vec<u8>), line: &[u8]) {
        let start = self.data.len();
        write_key(&mut self.data);
        let key_len = (self.data.len() - start) as u32;
        self.data.extend_from_slice(line);
        self.items.push(Item {
            table,
            key_len,
            line_len: line.len() as u32,
        });
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// The records in order: (table, key, record line).
    pub fn iter(&self) -> impl Iterator<Item = (TableId, &[u8], &[u8])> {
        let mut at = 0;
        self.items.iter().map(move |it| {
            let key_end = at + it.key_len as usize;
            let end = key_end + it.line_len as usize;
            let rec = (it.table, &self.data[at..key_end], &self.data[key_end..end]);
            at = end;
            rec
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order() {
        let mut b = Batch::default();
        b.push(TableId(1), |k| k.extend_from_slice(b"a|"), b"a|1|");
        b.push(TableId(2), |_| {}, b"x|");
        let got: Vec<_> = b.iter().collect();
        assert_eq!(
            got,
            vec![
                (TableId(1), &b"a|"[..], &b"a|1|"[..]),
                (TableId(2), &b""[..], &b"x|"[..])
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }
}
