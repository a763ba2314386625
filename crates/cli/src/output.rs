//! Tables for humans (comfy-table); JSON output is written by each command with serde_json.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};

/// Prints rows under `header` as an aligned table on stdout.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    println!("{table}");
}
