//! keycard-store
