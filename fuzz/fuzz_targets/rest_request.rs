//! REST request handling in process: the admin API's router over the same
//! kind of deployment as the S3 target, fed one to four requests read from
//! the input (bearer tokens are the input's own: the seeds carry the
//! deployment's admin and auditor tokens). No input may panic or get a
//! 5xx.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    domicile_fuzz::fuzz_requests(domicile_fuzz::Api::Rest, data);
});
