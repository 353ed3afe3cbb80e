"""Chat rooms' typed errors, shared by the chat service and its clients."""
