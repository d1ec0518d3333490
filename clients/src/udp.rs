//! The UDP probe client. STUB: to be implemented.
