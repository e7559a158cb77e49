//! Delta releases on the server (issue 15): what a delta manifest and its patch must satisfy to
//! be hosted (`add`, using the patch checks of `check`), and which release an update job sends each device (`choice`). The job's fallback
//! to the full image lives with the rest of the job procedure (`jobs::run`).

pub mod add;
pub mod check;
pub mod choice;
