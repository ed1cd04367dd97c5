//! keycard-services
