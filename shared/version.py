"""The platform's version, as every service and stats reporter announces it."""

VERSION = "0.1.0"
