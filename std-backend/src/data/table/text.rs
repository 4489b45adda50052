//! CSV text into a [`Table`], through the `csv` crate.

use super::Table;
use crate::data::error::{DataError, Result};
use std::path::Path;

/// Whether a CSV file's first record is a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Header {
    /// A header when some column's first cell is not a number and its
    /// second cell is (in a file of one record, when no cell is a number).
    #[default]
    Auto,
    /// The first record is a header.
    Yes,
    /// There is no header: the columns are named by their 0-based index.
    No,
}

/// How a CSV file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvFormat {
    /// Whether the first record is a header (default: decide from the data).
    pub header: Header,
    /// The field separator (default: `,`).
    pub delimiter: u8,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            header: Header::Auto,
            delimiter: b',',
        }
    }
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// Parses CSV `bytes` (the content of `path`, which errors name) into a
/// [`Table`].
///
/// Blank lines are skipped and cells trimmed; every record must have as
/// many fields as the first ([`DataError::RaggedRow`] names the line a
/// short or long record starts on). A file of no record is a
/// [`DataError::Format`]; so is text that is not UTF-8.
pub fn parse_csv_table(path: &Path, bytes: &[u8], format: &CsvFormat) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(format.delimiter)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut text = String::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut width = 0;
    let mut record = csv::StringRecord::new();
    let (mut counted, mut newlines) = (0usize, 0u64);
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, &e)),
        }
        // A line of spaces only: a blank line.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        // The csv crate's own line count skips blank lines and counts CRLF
        // oddly: count the newlines before the record's first byte instead.
        let mut start = record.position().map_or(0, |p| p.byte() as usize);
        while bytes.get(start).is_some_and(|b| *b == b'\r' || *b == b'\n') {
            start += 1;
        }
        let start = start.min(bytes.len());
        if start > counted {
            newlines += bytes[counted..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted = start;
        }
        let line = newlines + 1;
        if lines.is_empty() {
            width = record.len();
        } else if record.len() != width {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                line: usize::try_from(line).unwrap_or(usize::MAX),
                expected: width,
                found: record.len(),
            });
        }
        for field in &record {
            text.push_str(field);
            ends.push(text.len());
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            what: "no data (the file is empty)".to_string(),
        });
    }
    let cell = |i: usize| &text[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
    let header = match format.header {
        Header::Yes => true,
        Header::No => false,
        // A second record: a column whose first cell is no number and second
        // is. One record: a header if no cell is a number.
        Header::Auto if lines.len() > 1 => {
            (0..width).any(|c| !is_number(cell(c)) && is_number(cell(width + c)))
        }
        Header::Auto => (0..width).all(|c| !is_number(cell(c))),
    };
    if !header {
        let names = (0..width).map(|i| i.to_string()).collect();
        return Ok(Table::text(path, names, false, text, ends, lines));
    }
    let names: Vec<String> = (0..width).map(|c| cell(c).to_string()).collect();
    let skip = ends[width - 1];
    text.drain(..skip);
    let ends = ends[width..].iter().map(|e| e - skip).collect();
    lines.remove(0);
    Ok(Table::text(path, names, true, text, ends, lines))
}

fn csv_error(path: &Path, e: &csv::Error) -> DataError {
    let what = match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "not UTF-8 text (the record at byte {})",
            pos.as_ref().map_or(0, |p| p.byte())
        ),
        _ => format!("unreadable CSV: {e}"),
    };
    DataError::Format {
        path: path.to_path_buf(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::table::Cell;

    fn table(text: &str, header: Header) -> Table {
        let format = CsvFormat {
            header,
            ..CsvFormat::default()
        };
        parse_csv_table(Path::new("t.csv"), text.as_bytes(), &format).unwrap()
    }

    #[test]
    fn quoted_fields_crlf_bom_and_blank_lines() {
        let t = table(
            "\u{feff}a,\"b, \"\"quoted\"\"\"\r\n\r\n1,\"two\r\nlines\"\r\n 3 ,4\r\n",
            Header::Yes,
        );
        assert_eq!(t.column_names(), &["a", "b, \"quoted\""]);
        assert_eq!(t.rows(), 2);
        assert_eq!(t.cell(0, 1), Some(Cell::Text("two\r\nlines")));
        assert_eq!(t.cell(1, 0), Some(Cell::Text("3")));
        assert_eq!(t.location(1), crate::data::Location::Line(5));
    }

    #[test]
    fn header_detection() {
        assert!(table("x,y,label\n1,2,a\n", Header::Auto).has_header());
        assert!(!table("1,2,a\n3,4,b\n", Header::Auto).has_header());
        assert!(!table("1,2,a\n", Header::Auto).has_header());
        assert!(table("x,y\n", Header::Auto).has_header());
        assert_eq!(table("1,2\n", Header::No).column_names(), &["0", "1"]);
    }
}
