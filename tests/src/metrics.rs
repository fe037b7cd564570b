//! Reads Prometheus text exposition: sums of a metric's series, optionally filtered by
//! one label.

/// Sum of every sample of `name` (exact name; labels of any value).
pub fn sum(text: &str, name: &str) -> f64 {
    sum_where(text, name, None)
}

/// Sum of the samples of `name` whose labels include `label="value"` (when given).
pub fn sum_where(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            if let Some((key, want)) = label {
                let needle = format!("{key}=\"{want}\"");
                if !labels.split(',').any(|l| l == needle) {
                    return None;
                }
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_and_filters_labels() {
        let text = "# HELP x y\nringcast_connections{shard=\"0\"} 3\nringcast_connections{shard=\"1\"} 4\nringcast_connections_total 9\n";
        assert_eq!(sum(text, "ringcast_connections"), 7.0);
        assert_eq!(
            sum_where(text, "ringcast_connections", Some(("shard", "1"))),
            4.0
        );
        assert_eq!(sum(text, "missing"), 0.0);
    }
}
