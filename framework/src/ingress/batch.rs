//! A batch of structurally valid records passed from a probe's validator to its writer.

use gala_meta::TableId;

use crate::imdb::Stamp;

/// One record inside a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct Item {
    table: TableId,
    line_len: u32,
    /// Number of values; their ends are the next `values` entries of [`Batch::ends`].
    values: u32,
}

/// Records split by the validator: each record line stored back to back, with the end of
/// every value, so the writer need not scan the line again.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    ends: Vec<u32>,
    items: Vec<Item>,
    /// When the records were read, and how long their probe asks its series to be kept.
    pub at: Stamp,
}

impl Batch {
    /// Appends a record of `table`: `values` are the table's fields, in order, all borrowed
    /// from `line`, which holds exactly them (each followed by `|`).
    pub fn push(&mut self, table: TableId, line: &[u8], values: &[&[u8]]) {
        let base = line.as_ptr() as usize;
        self.ends.extend(
            values
                .iter()
                .map(|v| (v.as_ptr() as usize + v.len() - base) as u32),
        );
        self.data.extend_from_slice(line);
        self.items.push(Item {
            table,
            line_len: line.len() as u32,
            values: values.len() as u32,
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
        self.ends.clear();
        self.items.clear();
    }

    /// Calls `f` with each record in order: its table, its line, and its values (`out` is
    /// filled with them).
    pub fn for_each<'a>(
        &'a self,
        out: &mut Vec<&'a [u8]>,
        mut f: impl FnMut(TableId, &'a [u8], &[&'a [u8]]),
    ) {
        let (mut at, mut end_at) = (0, 0);
        for it in &self.items {
            let line = &self.data[at..at + it.line_len as usize];
            out.clear();
            let mut start = 0;
            for &end in &self.ends[end_at..end_at + it.values as usize] {
                out.push(&line[start..end as usize]);
                start = end as usize + 1;
            }
            f(it.table, line, out);
            at += it.line_len as usize;
            end_at += it.values as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_with_their_values() {
        let mut b = Batch::default();
        let l1 = b"a|1|".to_vec();
        b.push(TableId(1), &l1, &[&l1[0..1], &l1[2..3]]);
        let l2 = b"|x|".to_vec();
        b.push(TableId(2), &l2, &[&l2[0..0], &l2[1..2]]);
        let mut got = Vec::new();
        b.for_each(&mut Vec::new(), |t, line, values| {
            got.push((
                t,
                line.to_vec(),
                values.iter().map(|v| v.to_vec()).collect::<Vec<_>>(),
            ));
        });
        assert_eq!(
            got,
            vec![
                (
                    TableId(1),
                    b"a|1|".to_vec(),
                    vec![b"a".to_vec(), b"1".to_vec()]
                ),
                (
                    TableId(2),
                    b"|x|".to_vec(),
                    vec![b"".to_vec(), b"x".to_vec()]
                ),
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }
}
