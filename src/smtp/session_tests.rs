//! Session tests against a scripted peer.
