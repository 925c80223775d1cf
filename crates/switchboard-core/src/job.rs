//! A request deferred to a job queue: [`JobTicket`].

use serde::{Deserialize, Serialize};

/// Extension (response): the request was not answered now but queued as a job, to run
/// when budget allows. The response's event stream is empty; the edge answers
/// `202 Accepted` with the id, and the job's status and result are fetched by it.
///
/// ```
/// use switchboard_core::JobTicket;
/// let ticket = JobTicket { id: "job_42".into() };
/// assert_eq!(serde_json::to_string(&ticket).unwrap(), r#"{"id":"job_42"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobTicket {
    /// The job's id.
    pub id: String,
}
