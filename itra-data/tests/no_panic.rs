//! The fast, in-CI counterpart of `itra-data/fuzz/`: every parser gets truncations, bit flips,
//! byte overwrites, splices and random bytes derived from valid files of its format, from a
//! fixed seed, and must return (`Ok` or `Err`) without panicking. Runs in a few seconds; the
//! fuzz targets run the same entry points for as long as one likes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use itra_data::fuzzing::{TARGETS, seeds, target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Mutated inputs per seed file.
const MUTATIONS: usize = 300;

fn mutate(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    match rng.random_range(0..6) {
        // Truncation anywhere, the most common real-world corruption.
        0 => data.truncate(rng.random_range(0..=data.len())),
        // A few bit flips.
        1 => {
            for _ in 0..rng.random_range(1..=4) {
                if let Some(len) = std::num::NonZeroUsize::new(data.len()) {
                    let at = rng.random_range(0..len.get());
                    data[at] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        // Header-sized overwrites with extreme values, where counts and dimensions live.
        2 => {
            if !data.is_empty() {
                let at = rng.random_range(0..data.len().min(160));
                let value = [0x00, 0xff, 0x7f, 0x80][rng.random_range(0..4)];
                let end = (at + rng.random_range(1..=4)).min(data.len());
                data[at..end].fill(value);
            }
        }
        // Duplicate or drop a chunk.
        3 => {
            if !data.is_empty() {
                let start = rng.random_range(0..data.len());
                let end = rng.random_range(start..=data.len().min(start + 64));
                if rng.random_bool(0.5) {
                    let chunk = data[start..end].to_vec();
                    data.splice(start..start, chunk);
                } else {
                    data.drain(start..end);
                }
            }
        }
        // Random trailing bytes.
        4 => data.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
        // Pure noise of a random length.
        _ => data = (0..rng.random_range(0..256)).map(|_| rng.random::<u8>()).collect(),
    }
    data
}

#[test]
fn no_parser_panics_on_corrupt_input() {
    let seeds = seeds();
    for (name, _) in TARGETS {
        assert!(seeds.iter().any(|(n, _)| n == name), "target {name} has no seed");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut runs = 0;
    for (name, seed) in &seeds {
        let run = target(name).unwrap();
        run(seed);
        for _ in 0..MUTATIONS {
            let input = mutate(seed, &mut rng);
            if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
                let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
                panic!("{name} panicked on a {}-byte input starting {hex}", input.len());
            }
            runs += 1;
        }
    }
    assert_eq!(runs, seeds.len() * MUTATIONS);
}

#[test]
fn every_truncation_of_every_seed_is_rejected_or_parsed() {
    for (name, seed) in seeds() {
        let run = target(name).unwrap();
        // Every prefix for small files, a stride through large ones.
        let step = (seed.len() / 512).max(1);
        for len in (0..seed.len()).step_by(step) {
            if catch_unwind(AssertUnwindSafe(|| run(&seed[..len]))).is_err() {
                panic!("{name} panicked on its seed truncated to {len} of {} bytes", seed.len());
            }
        }
    }
}

/// Writes the seed files into `itra-data/fuzz/corpus/<target>/` for `cargo fuzz`:
/// `cargo test -p itra-data --test no_panic -- --ignored write_fuzz_corpus`.
#[test]
#[ignore = "writes the cargo-fuzz seed corpus"]
fn write_fuzz_corpus() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (i, (name, seed)) in seeds().into_iter().enumerate() {
        let dir = corpus.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
    }
}
