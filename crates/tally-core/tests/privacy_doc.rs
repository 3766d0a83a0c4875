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
