"""HTTP routes: parse, call the gateway, shape the answer. No business logic here."""
