//! `tally completions` and `tally man`: the scripts load in a real bash and complete
//! subcommands, and the man pages render with nroff.

use std::process::Command;

fn tally(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally")).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// What bash's completion function offers for the words typed so far.
/// bash calls the function with the command, the word being completed and the one before.
fn bash_completes(script: &std::path::Path, words: &str, current: usize) -> Vec<String> {
    let program = format!(
        "source {}; COMP_WORDS=({words} ''); COMP_CWORD={current}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
         _tally tally \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let output = Command::new("bash").args(["--norc", "-c", &program]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_subcommands_and_their_options() {
    let temp = tempfile::tempdir().unwrap();
    let script = temp.path().join("tally.bash");
    std::fs::write(&script, tally(&["completions", "bash"])).unwrap();
    let subcommands = bash_completes(&script, "tally se", 1);
    assert_eq!(subcommands, ["serve"], "tally se<TAB>");
    let options = bash_completes(&script, "tally serve --", 2);
    for option in ["--listen", "--db", "--config"] {
        assert!(options.iter().any(|o| o == option), "{option} in {options:?}");
    }
    let shells = bash_completes(&script, "tally completions ", 2);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shell} in {shells:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    let zsh = tally(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef tally"), "{zsh}");
    let fish = tally(&["completions", "fish"]);
    for subcommand in ["serve", "keys", "report", "completions", "man"] {
        assert!(zsh.contains(&format!("'{subcommand}:")), "zsh lacks {subcommand}");
        assert!(
            fish.contains(&format!("-a \"{subcommand}\"")),
            "fish lacks {subcommand}:\n{fish}"
        );
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("possible values: bash, elvish, fish, powershell, zsh"));
}

fn nroff(page: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("nroff")
        .args(["-man", "-Tutf8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nroff (groff-base) is installed");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    // Bold and underline are overstruck (`N\bN`); keep the last character of each.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&output.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text
}

#[test]
fn man_pages_render_for_the_command_and_each_subcommand() {
    let page = tally(&["man"]);
    assert!(page.contains(".TH tally 1"), "{page}");
    let text = nroff(&page);
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(text.contains("tally-serve(1)"), "{text}");

    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("man1");
    tally(&["man", "--out-dir", dir.to_str().unwrap()]);
    for name in ["tally.1", "tally-serve.1", "tally-keys-create.1", "tally-completions.1"] {
        assert!(dir.join(name).exists(), "{name} not written");
    }
    let serve = nroff(&std::fs::read_to_string(dir.join("tally-serve.1")).unwrap());
    assert!(serve.contains("--listen"), "{serve}");
}
