//! Replays every committed corpus file through the function its fuzz target calls (on stable,
//! no fuzzing engine): a crash the fuzzer once found, kept in the corpus, stays fixed.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("multistream_listener", libp2p_fuzz::multistream_listener),
    ("multistream_dialer", libp2p_fuzz::multistream_dialer),
    ("mplex", libp2p_fuzz::mplex),
    ("yamux", libp2p_fuzz::yamux),
    ("secio", libp2p_fuzz::secio),
    ("noise", libp2p_fuzz::noise),
    ("noise_payload", libp2p_fuzz::noise_payload),
    ("plaintext", libp2p_fuzz::plaintext),
    ("tls", libp2p_fuzz::tls),
    ("identify", libp2p_fuzz::identify),
    ("kad", libp2p_fuzz::kad),
    ("gossipsub", libp2p_fuzz::gossipsub),
];

fn corpus_dir(target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

#[test]
fn every_corpus_file_replays() {
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in files {
            let input = std::fs::read(&file).expect("read corpus file");
            target(&input);
        }
    }
}

#[test]
fn every_fuzz_target_has_a_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for entry in std::fs::read_dir(dir).expect("fuzz_targets") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz target {name} is not replayed here"
        );
    }
}

/// Writes the seeds (`-- --ignored write_seeds`); the corpus files they make are committed.
#[test]
#[ignore]
fn write_seeds() {
    for (name, inputs) in libp2p_fuzz::seeds::all() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input).expect("write seed");
        }
    }
}
