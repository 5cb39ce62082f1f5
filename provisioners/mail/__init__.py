"""The mail platform (Postfix + Dovecot) and its entries in the directory."""
