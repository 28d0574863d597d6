//! Rendering results: JSON (default, like az) or an aligned table.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Json,
    Table,
}

/// A table column: header and JSON pointer into each row.
pub type Column = (&'static str, &'static str);

fn cell(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Renders rows as an aligned table with the given columns.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| columns.iter().map(|(_, p)| cell(r, p)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |vals: Vec<String>| -> String {
        let parts: Vec<String> = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(columns.iter().map(|(h, _)| h.to_string()).collect()));
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in cells {
        out.push_str(&line(r));
    }
    out
}

/// Prints a value (or rows) in the chosen format.
pub fn print(output: Output, value: &Value, columns: &[Column]) {
    match output {
        Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())),
        Output::Table => {
            let rows = match value {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            emit(&table(&rows, columns));
        }
    }
}

/// Writes `text` to standard output. When the reader went away (`moat … | head`), the command
/// ends quietly, as Unix tools do, instead of panicking as `print!` would.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![serde_json::json!({"name": "a", "p": {"x": "long value"}}), serde_json::json!({"name": "bbbb", "p": {}})];
        let t = table(&rows, &[("Name", "/name"), ("X", "/p/x")]);
        assert_eq!(t, "Name  X\n----  ----------\na     long value\nbbbb\n");
    }
}
