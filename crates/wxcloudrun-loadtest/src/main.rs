//! `cargo run --release -p wxcloudrun-loadtest [-- --rounds N --seconds S ...]`: see `--help`.

use std::process::ExitCode;
use std::time::Duration;

use wxcloudrun_loadtest::server::ExporterThreads;
use wxcloudrun_loadtest::{Options, Variant, describe, run};

const HELP: &str = "\
wxcloudrun-loadtest: loopback HTTP/1.1 load test of wxcloudrun-telemetry's layer against bare axum
and the popular alternatives. The server (current-thread runtime) is pinned to one core, the load
generator (current-thread, keep-alive connections, closed loop) to another; variants are
interleaved over several rounds and each variant's median is reported as

    variant=<name> rps=<median rps> ratio=<rps / bare rps> p99_us=<median p99 in microseconds>

Options:
    --rounds N          rounds; every variant runs once per round, order rotated (default 5)
    --seconds S         measured seconds per variant per round (default 5)
    --warmup S          unmeasured warm-up seconds before each measurement (default 1)
    --connections C     concurrent keep-alive connections (default 32)
    --variants a,b,c    variants to run (default all): bare, wx_metrics, wx_sampled_out,
                        wx_traces_dropped, wx_traces, wx_traces_sdk_spans,
                        wx_traces_sdk_batch, wx_traces_otlp_crate,
                        axum_prometheus, trace_otel
    --no-pin            do not pin threads to cores
    --exporter-threads server-core|anywhere
                        where the span exporters' threads run (default server-core: they
                        compete with the server, as in a one-vCPU container)
    -h, --help          this text
";

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let seconds = |name: &str, text: String| -> Result<Duration, String> {
            text.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name}: {text:?} is not a number of seconds (0..=3600)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--rounds" => {
                options.rounds = count("--rounds", &value("--rounds")?, 1000)?;
            }
            "--seconds" => {
                options.seconds = seconds("--seconds", value("--seconds")?)?;
                if options.seconds.is_zero() {
                    return Err("--seconds must be more than 0".into());
                }
            }
            "--warmup" => options.warmup = seconds("--warmup", value("--warmup")?)?,
            "--connections" => {
                options.connections = count("--connections", &value("--connections")?, 10_000)?;
            }
            "--variants" => options.variants = variants(&value("--variants")?)?,
            "--no-pin" => options.pin = false,
            "--exporter-threads" => {
                options.exporters = match value("--exporter-threads")?.as_str() {
                    "server-core" => ExporterThreads::ServerCore,
                    "anywhere" => ExporterThreads::Anywhere,
                    other => {
                        return Err(format!(
                            "--exporter-threads: {other:?} is not server-core or anywhere"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Some(options))
}

/// A whole number in `1..=max`, for the flag `name`.
fn count(name: &str, text: &str, max: usize) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{name}: {text:?} is not in 1..={max}"))
}

/// `--variants`: names separated by commas, each once, at least one.
fn variants(text: &str) -> Result<Vec<Variant>, String> {
    let mut variants = Vec::new();
    for name in text.split(',').filter(|n| !n.trim().is_empty()) {
        let variant = Variant::parse(name)
            .ok_or_else(|| format!("--variants: unknown variant {name:?} (see --help)"))?;
        if !variants.contains(&variant) {
            variants.push(variant);
        }
    }
    if variants.is_empty() {
        return Err("--variants: no variant given".into());
    }
    Ok(variants)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    print!("{}", describe(&options));
    match run(options, |line| println!("{line}")) {
        Ok(report) => {
            println!();
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Result<Option<Options>, String> {
        parse(text.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn flags() {
        let o = args("--rounds 3 --seconds=0.5 --connections 8 --variants bare,wx_metrics")
            .unwrap()
            .unwrap();
        assert_eq!(o.rounds, 3);
        assert_eq!(o.seconds, Duration::from_millis(500));
        assert_eq!(o.connections, 8);
        assert_eq!(o.variants, [Variant::Bare, Variant::WxMetrics]);
        assert!(args("--help").unwrap().is_none());
        assert!(args("--variants nope").is_err());
        assert!(args("--rounds 0").is_err());
        assert!(args("--seconds").is_err());
        assert!(args("--frobnicate").is_err());
        let e = args("--exporter-threads anywhere").unwrap().unwrap();
        assert_eq!(e.exporters, ExporterThreads::Anywhere);
        assert!(args("--exporter-threads elsewhere").is_err());
        let d = args("").unwrap().unwrap();
        assert_eq!((d.rounds, d.connections), (5, 32));
        assert_eq!(d.variants, Variant::ALL);
        assert_eq!(
            Variant::parse("wx_traces_dropped"),
            Some(Variant::WxTracesDropped)
        );
    }
}
