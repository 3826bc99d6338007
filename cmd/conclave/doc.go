// Command conclave is Conclave's one binary: `conclave serve` runs a node, and the
// client subcommands (`conclave kv …`, `conclave cluster …`, `conclave session …`,
// `conclave lock …`, `conclave bench …`) talk to a cluster through the client package.
//
// Every flag not given on the command line may be set from the environment as
// CONCLAVE_<FLAG_NAME>, e.g. CONCLAVE_ENDPOINTS for --endpoints. Errors are printed to
// stderr as "Error: <message>" and exit with status 1, except that `conclave lock run`
// exits with the status of the command it ran.
//
// Nothing imports this package.
package main
