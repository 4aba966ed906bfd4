package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
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
	accessor, err := newID()
	if err != nil {
		return Token{}, "", err
	}
	secret, err := newID()
	if err != nil {
		return Token{}, "", err
	}
	t := Token{AccessorID: accessor, SecretHash: HashSecret(secret), Description: description,
		Policies: policies, Management: management}
	if err := t.Validate(); err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
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

// MaxTokenPolicies bounds the policies one token names.
const MaxTokenPolicies = 64

// Validate checks a token as stored: its accessor a UUID, its secret hash
// a SHA-256 in hex, its description and policy names within bounds.
func (t Token) Validate() error {
	if !isUUID(t.AccessorID) {
		return fmt.Errorf("%w: accessor id %.40q is not a UUID", ErrInvalid, t.AccessorID)
	}
	if len(t.SecretHash) != 64 || strings.Trim(t.SecretHash, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: token %s: secret hash is not a SHA-256 in hex", ErrInvalid, t.AccessorID)
	}
	if len(t.Description) > MaxDescriptionBytes {
		return fmt.Errorf("%w: description of %d bytes, at most %d", ErrInvalid, len(t.Description), MaxDescriptionBytes)
	}
	if len(t.Policies) > MaxTokenPolicies {
		return fmt.Errorf("%w: a token names at most %d policies, this one %d", ErrInvalid, MaxTokenPolicies, len(t.Policies))
	}
	for i, p := range t.Policies {
		if err := checkName(p); err != nil {
			return err
		}
		if slices.Contains(t.Policies[:i], p) {
			return fmt.Errorf("%w: policy %q named twice", ErrInvalid, p)
		}
	}
	return nil
}

// CheckAccessor reports whether id has the form of an accessor id.
func CheckAccessor(id string) error {
	if !isUUID(id) {
		return fmt.Errorf("%w: accessor id %.40q is not a UUID", ErrInvalid, id)
	}
	return nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
