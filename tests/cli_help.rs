//! `--help`: every flag and argument of every subcommand has a description, and the flags that take one of a
//! fixed set of values list the choices.
use std::process::Command;

const SUBCOMMANDS: [&str; 12] = [
    "train",
    "sample",
    "eps",
    "fid",
    "fid-stats",
    "nll",
    "memorization",
    "forward",
    "bench",
    "info",
    "kernels",
    "selftest",
];

fn help(sub: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args([sub, "--help"]).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

/// (the flag's usage, its description) for every entry of the Options/Arguments sections.
fn entries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    let mut in_section = false;
    for line in text.lines() {
        if line == "Options:" || line == "Arguments:" {
            in_section = true;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_section = false;
            continue;
        }
        if !in_section {
            continue;
        }
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if indent <= 6 && (t.starts_with('-') || t.starts_with('<') || t.starts_with('[')) {
            // "--steps <STEPS>  Total optimizer steps": the usage ends at the first double space.
            let (usage, desc) = t.split_once("  ").unwrap_or((t, ""));
            out.push((usage.to_string(), desc.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            // A description on the next line(s) (long help).
            last.1.push(' ');
            last.1.push_str(t);
        }
    }
    out
}

#[test]
fn every_flag_of_every_subcommand_is_described() {
    let mut missing = vec![];
    for sub in SUBCOMMANDS {
        let text = help(sub);
        let all = entries(&text);
        assert!(all.iter().any(|(u, _)| u.contains("--help")), "{sub}: the parser missed entries: {all:?}");
        for (usage, desc) in all {
            if desc.trim().is_empty() {
                missing.push(format!("{sub} {usage}"));
            }
        }
    }
    assert!(missing.is_empty(), "flags without a description: {missing:#?}");
}

#[test]
fn flags_with_choices_list_them() {
    let find = |sub: &str, flag: &str| -> String {
        entries(&help(sub))
            .into_iter()
            .find(|(u, _)| u.split([' ', ',']).any(|w| w == flag))
            .unwrap_or_else(|| panic!("{sub} has no {flag}"))
            .1
    };
    for sub in ["train", "forward", "nll", "memorization"] {
        let d = find(sub, "--dataset");
        assert!(["mnist", "fashion-mnist", "cifar10", "folder"].iter().all(|c| d.contains(c)), "{sub} --dataset: {d}");
    }
    for sub in ["train", "sample", "eps", "nll", "bench", "fid", "fid-stats"] {
        let d = find(sub, "--device");
        assert!(["auto", "cpu", "cuda", "cuda:N"].iter().all(|c| d.contains(c)), "{sub} --device: {d}");
    }
    for sub in ["train", "info", "bench"] {
        let d = find(sub, "--preset");
        assert!(["tiny", "mnist", "cifar10"].iter().all(|c| d.contains(c)), "{sub} --preset: {d}");
    }
    let d = find("sample", "--sampler");
    assert!(d.contains("ddpm") && d.contains("ddim"), "--sampler: {d}");
    let d = find("sample", "--model");
    assert!(d.contains("unet") && d.contains("empirical"), "--model: {d}");
    let d = find("sample", "--progressive");
    assert!(d.to_lowercase().contains("path"), "--progressive does not say it is a path: {d}");
    let d = find("sample", "--eta");
    assert!(d.contains("[0, 1]"), "--eta: {d}");
}
