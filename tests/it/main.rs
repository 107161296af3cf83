//! Integration tests: each starts the real server on an ephemeral port with a temporary data
//! directory and talks to it through the generated gRPC clients, as a bank system would.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod access;
mod alerts;
mod asof;
mod books;
mod claims;
mod cli;
mod config;
mod credit_lines;
mod dashboard;
mod deploy;
mod durability;
mod exposure;
mod fuzz;
mod ha;
mod ha_cluster;
mod helpers;
mod import;
mod journal;
mod limits;
mod metrics;
mod pg;
mod pledges;
mod registers;
mod risk;
mod service;
mod standing;
mod statistics;
mod tls;
mod tokens;
#[path = "../support/tools.rs"]
mod tools;
mod transparency;
mod trust;
mod upgrade;
