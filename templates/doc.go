// Package templates holds the actions an operator declares in
// configuration (the templates section, docs/routing.md "Templates"):
// each names a package and an action the protocol does not define, the
// extension headers it takes, a JSON schema of its payload, and what it
// maps to: a SIP request in or out of dialog, or a signed HTTP webhook.
//
// Start at [New], which compiles a [Config] into a [Set]; the gateway
// looks a frame's action up with [Set.Lookup], checks it with
// [Action.Check], and then sends it with [Action.SIPRequest] or
// [Action.CallWebhook]; [Action.Answer] and [Action.SIPAnswer] build the
// frame that answers the client. An incoming SIP request of a declared
// Info Package, or a NOTIFY, MESSAGE or UPDATE of an action that
// receives (SIPConfig.Receive), is found with [Set.ForRequest] and
// becomes a request frame with [Action.IncomingFrame]; the web side has
// [Set.AnswerTimeout] to answer it.
package templates
