//! S3 request handling in process: the S3 router over an engine on a
//! temporary SQLite catalog with folder regions, fed one to four requests
//! read from the input (see the crate docs for the format; requests can be
//! signed with the deployment's credential, so they reach the handlers).
//! No input may panic or get a 5xx: the storage is a local temporary
//! folder, so no answer has a genuine storage failure to report.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    domicile_fuzz::fuzz_requests(domicile_fuzz::Api::S3, data);
});
