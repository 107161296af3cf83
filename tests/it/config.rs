//! `ipledger serve`'s configuration, through the real binary: `--help` never prints a secret given
//! in the environment.

use std::process::Command;

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let password = "s3cret-Pa55word";
    let url = format!("postgres://ipledger:{password}@db.internal:5432/ledger");
    for command in [&["serve"][..], &["verify"], &["restore"], &["token", "create"], &["token", "list"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ipledger"))
            .args(command)
            .arg("--help")
            .env("IPLEDGER_JOURNAL", &url)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{command:?} --help: {text}");
        assert!(text.contains("IPLEDGER_JOURNAL"), "{command:?} --help documents the variable: {text}");
        assert!(!text.contains(password), "{command:?} --help prints the journal's password: {text}");
    }
}
