//! A benchmark's result: a table for docs/BENCHMARKS.md and the raw figures for bench-results/.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// File stem under bench-results/ and the table's anchor.
    pub id: String,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// What the figures mean, targets met or missed, and what limits them.
    pub notes: Vec<String>,
    /// Everything measured, for machines.
    pub raw: serde_json::Value,
}

impl Table {
    pub fn markdown(&self) -> String {
        let mut s = format!("## {}\n\n", self.title);
        s += &format!("| {} |\n", self.columns.join(" | "));
        s += &format!("|{}\n", "---|".repeat(self.columns.len()));
        for r in &self.rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        s += "\n";
        for n in &self.notes {
            s += &format!("{n}\n\n");
        }
        s
    }
}

/// `0.123` → "0.12", 1234.5 → "1234".
pub fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_markdown_table_with_its_notes() {
        let t = Table {
            id: "x".into(),
            title: "T".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into(), "2".into()]],
            notes: vec!["n".into()],
            raw: serde_json::Value::Null,
        };
        assert_eq!(
            t.markdown(),
            "## T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nn\n\n"
        );
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.1234), "0.12");
    }
}
