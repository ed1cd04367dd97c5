//! keycard-imds
