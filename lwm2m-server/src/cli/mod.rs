//! The admin subcommands of the `lwm2m-server` binary (everything but `serve`), which talk to a
//! running server's REST API:
//!
//! - `client`: [`AdminClient`], a small blocking HTTP client of the API;
//! - `commands`: one function per subcommand: the request, then what it prints;
//! - `output`: how an answer is printed: tables and lines for people, or the JSON as is;
//! - `request`: the body of `campaign create`, built from its flags.
//!
//! Errors say what to do next.

mod client;
mod commands;
mod output;
mod request;

pub use client::AdminClient;
pub use commands::{
    add_plain, add_suit, campaign_command, campaigns, cancel_job, clients, create_campaign,
    discover, exec, job_status, read, releases, show_campaign, start_job, write,
};
pub use request::{CampaignArgs, campaign_request, parse_duration_s, parse_waves};
