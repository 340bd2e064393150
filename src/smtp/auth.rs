//! SASL mechanisms for SMTP AUTH (RFC 4954).
