//! keycard-server
