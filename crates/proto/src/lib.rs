//! keycard-proto
