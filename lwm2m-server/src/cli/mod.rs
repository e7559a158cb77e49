//! The admin subcommands of the `lwm2m-server` binary (everything but `serve`), which talk to a
//! running server's REST API:
//!
//! - `client`: [`AdminClient`], a small blocking HTTP client of the API;
//! - `commands`: one function per subcommand: the request, then what it prints;
//! - `devices`: `device add|list|remove`, the DTLS credentials;
//! - `output`: how an answer is printed: tables and lines for people, or the JSON as is;
//! - `request`: the body of `campaign create`, built from its flags;
//! - `out`: printing: quiet on a closed pipe, device text escaped.
//!
//! Errors say what to do next.

#[macro_use]
mod out;
mod client;
mod commands;
mod devices;
mod output;
mod request;

pub use client::AdminClient;
pub use commands::{
    add_model, add_plain, add_suit, campaign_command, campaigns, cancel_job, clients,
    create_campaign, discover, exec, job_status, models, read, releases, show_campaign, show_model,
    start_job, write,
};
pub use devices::{NewDevice, add_device, devices, remove_device};
pub use out::{escape, print_line};
pub use request::{CampaignArgs, campaign_request, parse_duration_s, parse_finite, parse_waves};
