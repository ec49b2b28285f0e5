"""vpcwatch user interfaces: the command line and the Textual app."""
