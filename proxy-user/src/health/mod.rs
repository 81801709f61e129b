//! Health checking (in progress).
