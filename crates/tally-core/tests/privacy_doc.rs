//! `docs/PRIVACY.md` promises users which level keeps which field; this test holds the
//! promise to the code.

use tally_core::Level;
use tally_core::level::FIELD_LEVELS;

#[test]
fn privacy_md_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PRIVACY.md");
    let text = std::fs::read_to_string(path).expect("docs/PRIVACY.md exists");
    let mut documented = Vec::new();
    for line in text.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | field | what | basic | enhanced | full |
        if cells.len() != 7 {
            continue;
        }
        let field = cells[1].trim_matches('`');
        let marks: Vec<bool> = cells[3..6].iter().map(|cell| *cell == "✓").collect();
        let minimum = match marks.as_slice() {
            [true, true, true] => Level::Basic,
            [false, true, true] => Level::Enhanced,
            [false, false, true] => Level::Full,
            other => panic!("{field}: a level that keeps it must be followed by every higher level, got {other:?}"),
        };
        documented.push((field.to_owned(), minimum));
    }
    let code: Vec<(String, Level)> = FIELD_LEVELS
        .iter()
        .map(|(field, level)| ((*field).to_owned(), *level))
        .collect();
    assert_eq!(documented, code);
}

/// The backticked names in one cell of the upload-modes table (`—`: none).
fn names_in(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Every field of a counts upload as its wire form names it, groups as `counts[].field`.
fn counts_fields() -> Vec<String> {
    use tally_core::counts::{DayCounts, GroupCount};
    // Every optional field set, so that serialization shows all of them.
    let upload = DayCounts {
        app: "nexus".into(),
        install_id: "i".into(),
        day: jiff::civil::date(2026, 11, 30),
        counts: vec![GroupCount {
            kind: "command".into(),
            name: "command_executed".into(),
            command: Some("sync".into()),
            success: Some(false),
            error_category: Some("network".into()),
            count: 1,
            duration_count: 1,
            duration_total_ms: 5,
            histogram: vec![1],
        }],
    };
    let value = serde_json::to_value(&upload).unwrap();
    let mut fields: Vec<String> = value
        .as_object()
        .unwrap()
        .keys()
        .filter(|key| *key != "counts")
        .cloned()
        .collect();
    fields.extend(
        value["counts"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(|key| format!("counts[].{key}")),
    );
    fields.sort();
    fields
}

#[test]
fn upload_modes_table_matches_the_wire_forms() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PRIVACY.md");
    let text = std::fs::read_to_string(path).expect("docs/PRIVACY.md exists");
    let table = text
        .split("## What each upload mode sends")
        .nth(1)
        .expect("docs/PRIVACY.md has a section \"What each upload mode sends\"");
    let (mut local, mut sync, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for line in table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 6, "| information | local | sync, auto | counts |: {line}");
        local.extend(names_in(cells[2]));
        sync.extend(names_in(cells[3]));
        counts.extend(names_in(cells[4]));
    }
    assert!(local.is_empty(), "local mode sends nothing: {local:?}");
    sync.sort();
    let mut event_fields: Vec<String> = FIELD_LEVELS
        .iter()
        .filter(|(field, _)| !field.contains('.'))
        .map(|(field, _)| (*field).to_owned())
        .collect();
    event_fields.sort();
    assert_eq!(sync, event_fields, "sync and auto send each event's fields");
    counts.sort();
    assert_eq!(counts, counts_fields(), "counts mode sends exactly a DayCounts");
}
