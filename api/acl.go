package api

// ACLToken is a token as the API shows it: never its secret nor the
// secret's hash; SecretID only in the answer that creates it (POST
// /v1/acl/token, POST /v1/acl/bootstrap).
type ACLToken struct {
	AccessorID  string   `json:"accessor_id"`
	SecretID    string   `json:"secret_id,omitempty"`
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
	Management  bool     `json:"management"`
}

// ACLTokenRequest is the body of POST /v1/acl/token: at least one policy,
// or Management.
type ACLTokenRequest struct {
	Description string   `json:"description"`
	Policies    []string `json:"policies"`
	Management  bool     `json:"management"`
}
