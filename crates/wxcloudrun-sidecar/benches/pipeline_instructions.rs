//! A fixed number of scrapes of the 10,000-series bench page through one path, for instruction
//! counts under callgrind (load-independent, unlike wall time on a shared machine): the text page
//! and the OpenMetrics page with an exemplar on every bucket line (ids, values and times new each
//! scrape), each parsed or replayed, then converted and encoded for remote write.
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

use wxcloudrun_exposition::{Format, Limits, parse};
use wxcloudrun_sidecar::export::remote_write;
use wxcloudrun_sidecar::pipeline::convert::{Converter, Source};
use wxcloudrun_sidecar::pipeline::replay::{Read, Replay};

const VARIANTS: [&str; 4] = [
    "parsed_text",
    "replayed_text",
    "parsed_exemplars",
    "replayed_exemplars",
];

/// Pages of one shape, different values (and exemplars): scrape `i` reads `pages[i % len]`.
fn pages(exemplars: bool) -> (Vec<String>, Format) {
    if exemplars {
        let pages = (1..=3).map(page::page_with_exemplars).collect();
        (pages, Format::OpenMetrics)
    } else {
        (vec![page::page()], Format::PrometheusText)
    }
}

fn run(variant: &str, n: usize) -> Result<(), String> {
    let (replayed, exemplars) = match variant {
        "parsed_text" => (false, false),
        "replayed_text" => (true, false),
        "parsed_exemplars" => (false, true),
        "replayed_exemplars" => (true, true),
        other => return Err(format!("unknown variant {other:?}: one of {VARIANTS:?}")),
    };
    let (pages, format) = pages(exemplars);
    let added = [("instance".to_owned(), "orders-001-abcde".to_owned())];
    let mut converter = Converter::new(&added, Some(1_700_000_000_000));
    let mut replay = Replay::new();
    let limits = Limits::default();
    let relabel = remote_write::Relabel::default();
    // Scrape 0 learns the shape (or fills the converter's memory): not what is counted.
    for i in 0..=n {
        let text = &pages[i % pages.len()];
        let at = 1_700_000_000_000 + 1_000 * i as i64;
        let encoded = if replayed {
            let mut read = replay
                .read(text, format, &limits, &mut converter)
                .map_err(|e| e.to_string())?;
            if i > 0 && !matches!(read, Read::Replayed(_)) {
                return Err(format!("scrape {i} was not replayed"));
            }
            remote_write::encode(&converter.convert([read.source()], at), &relabel)
        } else {
            let page = parse(text, format).map_err(|e| e.to_string())?;
            remote_write::encode(&converter.convert([Source::Page(&page)], at), &relabel)
        };
        std::hint::black_box(encoded);
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
