"""The DHCP servers behind the seam: everything one server software needs (its config
language, validation, pair rules, apply, health) lives in one subpackage here."""
