//! The end-to-end test harness: builds and starts the real `ringcast` binary on free
//! ports, talks plain HTTP/1.1 to its admin port (also pipelined), reads its Prometheus metrics, runs
//! `wsload`, and stops every process it started by pid.

pub mod broker_health;
pub mod gateway;
pub mod gateway_log;
pub mod http;
pub mod http_pipeline;
pub mod metrics;
pub mod pki;
pub mod ports;
pub mod proc_stats;
pub mod programs;
pub mod prometheus;
pub mod redis_server;
pub mod waits;
pub mod webhook_receiver;
pub mod ws_client;
