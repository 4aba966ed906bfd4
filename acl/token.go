package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
)

// MaxSecretBytes is the longest secret a request may carry; a longer one
// is refused before it is hashed.
const MaxSecretBytes = 128

// Token is a credential as the cluster stores it: its secret only as a
// hash.
type Token struct {
	// AccessorID names the token in the API (listing, deletion); it is
	// not a credential.
	AccessorID  string   `json:"accessor_id"`
	SecretHash  string   `json:"secret_hash"`
	Description string   `json:"description,omitempty"`
	Policies    []string `json:"policies,omitempty"`
	// Management tokens may do everything (the bootstrap token is one).
	Management bool `json:"management,omitempty"`
}

// NewToken makes a token with fresh random accessor and secret, and
// returns the secret, which is shown once and stored nowhere.
func NewToken(description string, policies []string, management bool) (Token, string, error) {
	if len(description) > MaxDescriptionBytes {
		return Token{}, "", fmt.Errorf("%w: description of %d bytes, at most %d", ErrInvalid, len(description), MaxDescriptionBytes)
	}
	for _, p := range policies {
		if err := checkName(p); err != nil {
			return Token{}, "", err
		}
	}
	accessor, err := newID()
	if err != nil {
		return Token{}, "", err
	}
	secret, err := newID()
	if err != nil {
		return Token{}, "", err
	}
	return Token{AccessorID: accessor, SecretHash: HashSecret(secret), Description: description,
		Policies: policies, Management: management}, secret, nil
}

// HashSecret is the stored form of a secret.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Matches reports, in constant time, whether secret is the token's.
func (t Token) Matches(secret string) bool {
	h := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(h), []byte(t.SecretHash)) == 1
}

// CheckSecret refuses a secret that cannot be any token's, before any
// lookup: empty or longer than MaxSecretBytes.
func CheckSecret(secret string) error {
	if secret == "" || len(secret) > MaxSecretBytes {
		return fmt.Errorf("%w: a token is 1 to %d bytes, this one %d", ErrInvalid, MaxSecretBytes, len(secret))
	}
	return nil
}

// newID is a random UUID (version 4), from crypto/rand.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
