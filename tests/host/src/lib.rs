//! test host
