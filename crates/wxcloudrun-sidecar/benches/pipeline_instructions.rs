//! A fixed number of scrapes of the 10,000-series bench page through one path, for instruction
//! counts under callgrind (load-independent, unlike wall time on a shared machine): the text page
//! and the OpenMetrics page with an exemplar on every bucket line (ids, values and times new each
//! scrape), each parsed or replayed, then converted and encoded for remote write; and a
//! 100,000-series page. The page is given up to the conversion, as the pipeline gives it; each
//! path runs whole (`convert`, one batch, encoded at the end) and `_in_chunks`, as the pipeline
//! runs it (chunks of [`CHUNK_SAMPLES`], each encoded as it comes).
//!
//! ```text
//! cargo bench -p wxcloudrun-sidecar --bench pipeline_instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null <bench binary> <variant> <n>
//! ```
//!
//! Run for two values of `n`: the difference of the "Collected" totals over the difference of `n`
//! is one scrape, start-up, page building and learning cancelled out. Without arguments (as
//! `cargo bench` runs it) each variant runs two scrapes, as a smoke test.

mod page;
// Shared with `pipeline_memory`, which builds every page in it; this bench takes one.
#[allow(dead_code)]
mod pages;

use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::export::remote_write;
use wxcloudrun_sidecar::pipeline::CHUNK_SAMPLES;
use wxcloudrun_sidecar::pipeline::convert::{Converter, Source};
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

const VARIANTS: [&str; 12] = [
    "parsed_text",
    "replayed_text",
    "parsed_exemplars",
    "replayed_exemplars",
    "parsed_100k",
    "replayed_100k",
    "parsed_text_in_chunks",
    "replayed_text_in_chunks",
    "parsed_exemplars_in_chunks",
    "replayed_exemplars_in_chunks",
    "parsed_100k_in_chunks",
    "replayed_100k_in_chunks",
];

/// Pages of one shape, different values (and exemplars): scrape `i` reads `pages[i % len]`.
fn pages(page: &str) -> Option<(Vec<String>, Format)> {
    Some(match page {
        "text" => (vec![page::page()], Format::PrometheusText),
        "exemplars" => {
            let pages = (1..=3).map(page::page_with_exemplars).collect();
            (pages, Format::OpenMetrics)
        }
        "100k" => (vec![pages::series(100_000)], Format::PrometheusText),
        _ => return None,
    })
}

fn run(variant: &str, n: usize) -> Result<(), String> {
    let unknown = || format!("unknown variant {variant:?}: one of {VARIANTS:?}");
    let (rest, in_chunks) = match variant.strip_suffix("_in_chunks") {
        Some(rest) => (rest, true),
        None => (variant, false),
    };
    let (replayed, page) = match rest.split_once('_') {
        Some(("parsed", page)) => (false, page),
        Some(("replayed", page)) => (true, page),
        _ => return Err(unknown()),
    };
    let (pages, format) = pages(page).ok_or_else(unknown)?;
    let added = [("instance".to_owned(), "orders-001-abcde".to_owned())];
    let mut converter = Converter::new(&added, Some(1_700_000_000_000));
    let mut replay = Replay::new();
    let limits = Limits::default();
    let relabel = remote_write::Relabel::default();
    // Scrape 0 learns the shape (or fills the converter's memory): not what is counted.
    for i in 0..=n {
        let text = &pages[i % pages.len()];
        let at = 1_700_000_000_000 + 1_000 * i as i64;
        let source = if replayed {
            let read = replay
                .read(text, format, &limits, &mut converter)
                .map_err(|e| e.to_string())?;
            if i > 0 && !matches!(read, Read::Replayed(_)) {
                return Err(format!("scrape {i} was not replayed"));
            }
            read.into_source()
        } else {
            Source::Parsed(parse(text, format).map_err(|e| e.to_string())?)
        };
        if in_chunks {
            let mut encode = |chunk| {
                std::hint::black_box(remote_write::encode(&chunk, &relabel));
            };
            converter.convert_in_chunks([source], at, CHUNK_SAMPLES, &mut encode);
        } else {
            let batch = converter.convert([source], at);
            std::hint::black_box(remote_write::encode(&batch, &relabel));
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let result = match args.as_slice() {
        [variant, n] => n
            .parse()
            .map_err(|e| format!("scrapes {n:?}: {e}"))
            .and_then(|n| run(variant, n)),
        _ => VARIANTS.iter().try_for_each(|variant| run(variant, 2)),
    };
    if let Err(err) = result {
        eprintln!("{err}");
        std::process::exit(1);
    }
}
