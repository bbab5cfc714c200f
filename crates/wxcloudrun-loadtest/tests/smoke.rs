//! Every variant serves requests without errors through the whole pipeline (server thread, load
//! generator, OTLP sink). Not a speed test.

use std::time::Duration;

use wxcloudrun_loadtest::{Options, Variant, run};

#[test]
fn every_variant_serves_requests_without_errors() {
    let options = Options {
        rounds: 1,
        seconds: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        connections: 4,
        variants: Variant::ALL.to_vec(),
        ..Options::default()
    };
    let report = run(options, |line| eprintln!("{line}")).expect("the run completes");
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.results.len(), Variant::ALL.len());
    for (variant, samples) in &report.results {
        assert_eq!(samples.len(), 1, "{variant:?}");
        let load = &samples[0].load;
        assert!(load.completed > 0, "{variant:?} served no request");
        assert_eq!(load.errors, 0, "{variant:?}: {:?}", load.first_error);
        assert!(load.latency.quantile(0.99).is_some());
        if variant.exports_spans() {
            assert!(samples[0].spans > 0, "{variant:?} exported no span");
        }
        assert!(
            rendered.contains(&format!("variant={} rps=", variant.name())),
            "{rendered}"
        );
    }
    assert_eq!(report.sink_rejected, 0);
}
