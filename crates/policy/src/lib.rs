//! keycard-policy
