//! CSV text for the results files, written by the `csv` crate so that a cell
//! holding a comma, a quote or a line break is quoted as RFC 4180 asks. The
//! callers format their numbers (fixed decimals) before they get here.

/// The CSV document of `header` and `rows`, one line each, `\n`-terminated;
/// a cell is quoted only when it must be.
///
/// # Panics
/// When a row's length differs from the header's: a programming error in
/// the caller, never a property of the data.
pub fn csv_text<R, C>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator,
    C::Item: AsRef<[u8]>,
{
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail; a mismatched row length is a bug.
    writer
        .write_record(header)
        .expect("the CSV header is written to memory");
    for row in rows {
        writer
            .write_record(row)
            .expect("every CSV row has the header's width");
    }
    let bytes = writer
        .into_inner()
        .expect("flushing CSV to memory cannot fail");
    // Every cell came from a `&str` or `String`, so the bytes are UTF-8.
    String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_cells_are_written_as_they_are() {
        let text = csv_text(&["a", "b"], [["1", "0.500"], ["x", ""]]);
        assert_eq!(text, "a,b\n1,0.500\nx,\n");
    }

    #[test]
    fn commas_quotes_and_newlines_are_quoted() {
        let text = csv_text(
            &["name", "n"],
            [["a,b", "1"], ["say \"hi\"", "2"], ["two\nlines", "3"]],
        );
        assert_eq!(
            text,
            "name,n\n\"a,b\",1\n\"say \"\"hi\"\"\",2\n\"two\nlines\",3\n"
        );
        // Read back by a CSV reader, every cell is what went in.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let cells: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        assert_eq!(cells, ["a,b", "say \"hi\"", "two\nlines"]);
    }
}
