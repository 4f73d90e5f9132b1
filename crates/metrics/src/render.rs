//! The Prometheus text exposition format (0.0.4): per metric name one
//! `# HELP` (when described) and one `# TYPE` line, then its series,
//! sorted by name and by labels so that two scrapes line up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use metrics::Key;

use crate::recorder::Inner;

/// One histogram series: its labels, its buckets (labels with `le`,
/// cumulative count), its sum and its count.
type Series = (String, Vec<(String, u64)>, f64, u64);

/// One metric name's series, by kind. A name registered as two kinds (a
/// programming error) renders as the first of counter, gauge, histogram
/// only, so that the output stays valid.
#[derive(Default)]
struct Family {
    counters: Vec<(String, u64)>,
    gauges: Vec<(String, f64)>,
    histograms: Vec<Series>,
}

pub(crate) fn render(inner: &Inner) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    inner.registry.visit_counters(|key, c| {
        let value = c.load(Ordering::Relaxed);
        family(&mut families, key)
            .counters
            .push((labels(key, None), value));
    });
    inner.registry.visit_gauges(|key, g| {
        let value = f64::from_bits(g.load(Ordering::Relaxed));
        family(&mut families, key)
            .gauges
            .push((labels(key, None), value));
    });
    inner.registry.visit_histograms(|key, h| {
        let cumulative = h.cumulative();
        let total = cumulative.last().copied().unwrap_or(0);
        let buckets = h
            .bounds()
            .iter()
            .map(|b| number(*b))
            .chain(std::iter::once("+Inf".to_owned()))
            .zip(cumulative)
            .map(|(le, count)| (labels(key, Some(&le)), count))
            .collect();
        family(&mut families, key)
            .histograms
            .push((labels(key, None), buckets, h.sum(), total));
    });

    let descriptions = inner
        .descriptions
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    for (name, mut family) in families {
        let kind = if !family.counters.is_empty() {
            "counter"
        } else if !family.gauges.is_empty() {
            "gauge"
        } else {
            "histogram"
        };
        if let Some(help) = descriptions.get(&name) {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        }
        let _ = writeln!(out, "# TYPE {name} {kind}");
        match kind {
            "counter" => {
                family.counters.sort_by(|a, b| a.0.cmp(&b.0));
                for (labels, value) in &family.counters {
                    let _ = writeln!(out, "{name}{labels} {value}");
                }
            }
            "gauge" => {
                family.gauges.sort_by(|a, b| a.0.cmp(&b.0));
                for (labels, value) in &family.gauges {
                    let _ = writeln!(out, "{name}{labels} {}", number(*value));
                }
            }
            _ => {
                family.histograms.sort_by(|a, b| a.0.cmp(&b.0));
                for (labels, buckets, sum, count) in &family.histograms {
                    for (bucket_labels, cumulative) in buckets {
                        let _ = writeln!(out, "{name}_bucket{bucket_labels} {cumulative}");
                    }
                    let _ = writeln!(out, "{name}_sum{labels} {}", number(*sum));
                    let _ = writeln!(out, "{name}_count{labels} {count}");
                }
            }
        }
    }
    out
}

fn family<'a>(families: &'a mut BTreeMap<String, Family>, key: &Key) -> &'a mut Family {
    families.entry(metric_name(key.name())).or_default()
}

/// `{a="x",b="y"}` (with `le` last when given), or nothing without labels.
fn labels(key: &Key, le: Option<&str>) -> String {
    let mut out = String::new();
    for label in key.labels() {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&label_name(label.key()));
        out.push_str("=\"");
        escape_value(label.value(), &mut out);
        out.push('"');
    }
    if let Some(le) = le {
        out.push(if out.is_empty() { '{' } else { ',' });
        let _ = write!(out, "le=\"{le}\"");
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// A number as Prometheus parses it (`+Inf`, `-Inf`, `NaN` spelled its way).
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// A metric name with every character Prometheus does not allow replaced
/// by `_` (ours are all valid; a label-derived name might not be).
fn metric_name(name: &str) -> String {
    name.char_indices()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn label_name(name: &str) -> String {
    name.char_indices()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text with `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use metrics::{Label, Level, Metadata, Recorder as _};

    use crate::Recorder;

    const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Key {
        metrics::Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn counters_gauges_and_histograms_render_as_prometheus_parses_them() {
        let r = Recorder::new();
        r.describe_counter(
            "requests_total".into(),
            None,
            "Requests.\nAll of them.".into(),
        );
        r.register_counter(&key("requests_total", &[("class", "2xx")]), &META)
            .increment(3);
        r.register_counter(&key("requests_total", &[("class", "5xx")]), &META)
            .absolute(7);
        r.register_gauge(&key("up", &[]), &META).set(1.0);
        r.register_gauge(&key("ratio", &[("a", "x\"y\\z\nw")]), &META)
            .set(0.25);
        let _registered_only = r.register_gauge(&key("unset", &[]), &META);
        let h = r.register_histogram(&key("t_seconds", &[("store", "s1")]), &META);
        h.record(0.0003);
        h.record(20.0);
        let b = r.register_histogram(&key("s_bytes", &[]), &META);
        b.record(1000.0);

        let out = r.handle().render();
        for line in [
            "# HELP requests_total Requests.\\nAll of them.",
            "# TYPE requests_total counter",
            "requests_total{class=\"2xx\"} 3",
            "requests_total{class=\"5xx\"} 7",
            "# TYPE up gauge",
            "up 1",
            "ratio{a=\"x\\\"y\\\\z\\nw\"} 0.25",
            "unset 0",
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{store=\"s1\",le=\"0.00025\"} 0",
            "t_seconds_bucket{store=\"s1\",le=\"0.0005\"} 1",
            "t_seconds_bucket{store=\"s1\",le=\"10\"} 1",
            "t_seconds_bucket{store=\"s1\",le=\"+Inf\"} 2",
            "t_seconds_sum{store=\"s1\"} 20.0003",
            "t_seconds_count{store=\"s1\"} 2",
            "s_bytes_bucket{le=\"256\"} 0",
            "s_bytes_bucket{le=\"1024\"} 1",
            "s_bytes_count 1",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
        // One TYPE line per name, each before its series.
        assert_eq!(out.matches("# TYPE requests_total").count(), 1);
        let type_at = out.find("# TYPE t_seconds").unwrap();
        assert!(out.find("t_seconds_bucket").unwrap() > type_at);
    }

    #[test]
    fn a_name_registered_as_two_kinds_renders_once() {
        let r = Recorder::new();
        r.register_counter(&key("x", &[]), &META).increment(1);
        r.register_gauge(&key("x", &[]), &META).set(5.0);
        let out = r.handle().render();
        assert_eq!(out, "# TYPE x counter\nx 1\n");
    }

    #[test]
    fn invalid_characters_in_names_become_underscores() {
        let r = Recorder::new();
        r.register_counter(&key("9a-b.c", &[("l-1", "v")]), &META)
            .increment(1);
        let out = r.handle().render();
        assert!(out.contains("_a_b_c{l_1=\"v\"} 1"), "{out}");
    }

    #[test]
    fn special_numbers_are_spelled_as_prometheus_parses_them() {
        assert_eq!(super::number(f64::INFINITY), "+Inf");
        assert_eq!(super::number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(super::number(f64::NAN), "NaN");
        assert_eq!(super::number(2.5), "2.5");
        assert_eq!(super::number(3.0), "3");
    }
}
