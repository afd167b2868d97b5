//! The CloudWatch publisher: every `[metrics] interval_ms` it sends the catalog's values with
//! PutMetricData, and once more when it is stopped (after the final checkpoint).
//!
//! # Invariants
//!
//! Publishing never stops or slows replication: it runs in its own task, every call has a
//! timeout, and a failure is logged (once per incident, then sparsely) and counted in
//! [`super::PUBLISH_FAILURES`]. Counters are sent as their increase since the last call that
//! succeeded, so a failed call loses nothing: the next one carries the increase.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_sdk_cloudwatch::{
    error::DisplayErrorContext,
    primitives::DateTime,
    types::{Dimension, MetricDatum, StandardUnit, StatisticSet},
};
use tokio_util::sync::CancellationToken;

use super::{Kind, Metric, Metrics, Snapshot, Stats, PUT_LATENCY, TABLE_EVENTS_PUT};
use crate::config::MetricsConfig;

/// CloudWatch's limit on datums per PutMetricData call.
const MAX_DATUMS_PER_CALL: usize = 1000;

/// How long one PutMetricData call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends metrics to CloudWatch.
#[derive(Debug)]
pub(crate) struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    dimensions: Vec<Dimension>,
    metrics: Arc<Metrics>,
    /// Counter totals as of the last successful call.
    sent: HashMap<&'static str, u64>,
    sent_tables: HashMap<String, u64>,
    failures_in_a_row: u32,
}

impl Publisher {
    /// A publisher for `metrics` with the settings of `[metrics]`; `stream` is the `Stream`
    /// dimension.
    pub(crate) async fn new(config: &MetricsConfig, stream: &str, metrics: Arc<Metrics>) -> Self {
        let sdk_config =
            crate::config::aws_sdk_config(config.region.as_deref(), config.endpoint_url.as_deref())
                .await;
        let dimension =
            |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        Self {
            client: aws_sdk_cloudwatch::Client::new(&sdk_config),
            namespace: config.namespace.clone(),
            dimensions: vec![
                dimension("Stream", stream),
                dimension("Source", &config.source),
            ],
            metrics,
            sent: HashMap::new(),
            sent_tables: HashMap::new(),
            failures_in_a_row: 0,
        }
    }

    /// Publishes every `interval` until `stop` fires, then once more.
    pub(crate) async fn run(mut self, interval: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => self.publish().await,
            }
        }
        self.publish().await;
    }

    /// One round: every metric's current value (counters as their increase), in calls of at
    /// most 1000 datums.
    pub(crate) async fn publish(&mut self) {
        let now = std::time::SystemTime::now();
        let snapshot = self.metrics.snapshot(now);
        let latency = self.metrics.take_latency_window();
        let datums = self.datums(&snapshot, latency, DateTime::from(now));
        let mut result = Ok(());
        for chunk in datums.chunks(MAX_DATUMS_PER_CALL) {
            let call = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send();
            result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(DisplayErrorContext(&error).to_string()),
                Err(_) => Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
            };
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => {
                if self.failures_in_a_row > 0 {
                    tracing::info!(
                        failures = self.failures_in_a_row,
                        "publishing metrics to CloudWatch works again"
                    );
                }
                self.failures_in_a_row = 0;
                for (metric, total) in &snapshot.counters {
                    self.sent.insert(metric.name, *total);
                }
                for (table, total) in &snapshot.per_table {
                    self.sent_tables.insert(table.as_str().to_owned(), *total);
                }
            }
            Err(error) => {
                // The latency samples of a failed round are put back for the next one.
                self.metrics.restore_latency_window(latency);
                self.metrics.publish_failures.add(1);
                self.failures_in_a_row += 1;
                let n = self.failures_in_a_row;
                if n == 1 || n.is_power_of_two() {
                    tracing::warn!(namespace = %self.namespace, failures = n, error = %error, "cannot publish metrics to CloudWatch; replication goes on, counters carry over to the next try");
                }
            }
        }
    }

    fn datums(&self, snapshot: &Snapshot, latency: Stats, at: DateTime) -> Vec<MetricDatum> {
        let datum = |metric: &Metric, dimensions: Vec<Dimension>| {
            MetricDatum::builder()
                .metric_name(metric.name)
                .unit(StandardUnit::from(metric.unit.cloudwatch()))
                .timestamp(at)
                .set_dimensions(Some(dimensions))
        };
        let mut datums = Vec::new();
        for (metric, value) in &snapshot.gauges {
            debug_assert_eq!(metric.kind, Kind::Gauge);
            datums.push(datum(metric, self.dimensions.clone()).value(*value).build());
        }
        for (metric, total) in &snapshot.counters {
            let increase = total.saturating_sub(self.sent.get(metric.name).copied().unwrap_or(0));
            datums.push(
                datum(metric, self.dimensions.clone())
                    .value(increase as f64)
                    .build(),
            );
        }
        if latency.count > 0 {
            let set = StatisticSet::builder()
                .sample_count(latency.count as f64)
                .sum(latency.sum)
                .minimum(latency.min)
                .maximum(latency.max)
                .build();
            datums.push(
                datum(&PUT_LATENCY, self.dimensions.clone())
                    .statistic_values(set)
                    .build(),
            );
        }
        for (table, total) in &snapshot.per_table {
            let increase =
                total.saturating_sub(self.sent_tables.get(table.as_str()).copied().unwrap_or(0));
            let mut dimensions = self.dimensions.clone();
            dimensions.push(
                Dimension::builder()
                    .name("Table")
                    .value(table.as_str())
                    .build(),
            );
            datums.push(
                datum(&TABLE_EVENTS_PUT, dimensions)
                    .value(increase as f64)
                    .build(),
            );
        }
        datums
    }
}
