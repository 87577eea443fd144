package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"dse.dev/dse/dse"
)

// Client talks to one node's HTTP API.
type Client struct {
	cfg   ClientConfig
	base  string
	hc    *http.Client
	token string
}

// Addr returns the address the client talks to.
func (c *Client) Addr() string { return c.cfg.Addr }

// Token returns the client's token.
func (c *Client) Token() string { return c.cfg.Token }

// TLS returns the client's TLS settings (nil: plain HTTP).
func (c *Client) TLS() *tls.Config { return c.cfg.TLS }

// ClientConfig holds a client's settings.
type ClientConfig struct {
	// Addr is the node's HTTP address, host:port (or a full URL).
	Addr string
	// Token is sent as a bearer token when set.
	Token string
	// TLS, when set, makes the client speak HTTPS.
	TLS *tls.Config
	// Timeout bounds a whole request; zero means none (streams).
	Timeout time.Duration
}

// NewClient returns a client for cfg.Addr.
func NewClient(cfg ClientConfig) *Client {
	base := cfg.Addr
	if !strings.Contains(base, "://") {
		scheme := "http"
		if cfg.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	tr.Proxy = nil
	return &Client{
		cfg:   cfg,
		base:  strings.TrimRight(base, "/"),
		hc:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		token: cfg.Token,
	}
}

// Error is an API error: the HTTP status, and the dse error it carries
// (errors.Is matches dse's sentinels through it).
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the dse error of the code.
func (e *Error) Unwrap() error { return dse.FromCode(e.Code, e.Msg) }

// request sends a request and returns the response for the caller to read;
// a non-2xx answer is turned into an *Error.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", dse.ErrUnavailable, unwrapURLError(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb errorBody
	if json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" {
		return nil, &Error{Status: resp.StatusCode, Code: "internal", Msg: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))}
	}
	return nil, &Error{Status: resp.StatusCode, Code: eb.Error.Code, Msg: eb.Error.Message}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %v", ue.Op, ue.URL, ue.Err)
	}
	return err
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	return c.doBody(ctx, method, path, body, out)
}

// doBody sends body as it is and decodes a JSON answer into out.
func (c *Client) doBody(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// Status returns the node's Raft status.
func (c *Client) Status(ctx context.Context) (dse.StatusReport, error) {
	var st dse.StatusReport
	return st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]dse.Member, error) {
	var ms []dse.Member
	return ms, c.do(ctx, http.MethodGet, "/v1/members", nil, &ms)
}

// Join asks the cluster to add a node.
func (c *Client) Join(ctx context.Context, req dse.JoinRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/members", req, nil)
}

// Remove removes a member.
func (c *Client) Remove(ctx context.Context, id string, force bool) error {
	return c.do(ctx, http.MethodDelete, fmt.Sprintf("/v1/members/%s?force=%t", url.PathEscape(id), force), nil, nil)
}

// Promote turns a non-voter into a voter.
func (c *Client) Promote(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/members/"+url.PathEscape(id)+"/promote", nil, nil)
}

// Leave makes the addressed node leave the cluster.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", nil, nil)
}

// TransferLeadership moves leadership (to a given voter, or any) and returns
// the new leader's id.
func (c *Client) TransferLeadership(ctx context.Context, to string) (string, error) {
	var out struct {
		Leader string `json:"leader"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/leader/transfer", TransferRequest{To: to}, &out)
	return out.Leader, err
}

// JoinCluster asks the nodes at addrs, in turn, to add req, retrying until one
// accepts or ctx ends.
func JoinCluster(ctx context.Context, addrs []string, tlsCfg *tls.Config, token string, req dse.JoinRequest) error {
	backoff := 100 * time.Millisecond
	var last error
	for {
		for _, a := range addrs {
			c := NewClient(ClientConfig{Addr: a, TLS: tlsCfg, Token: token, Timeout: 15 * time.Second})
			if last = c.Join(ctx, req); last == nil {
				return nil
			}
			// A refusal (bad input, auth) will not change by retrying.
			var ae *Error
			if errors.As(last, &ae) && ae.Status/100 == 4 {
				return fmt.Errorf("join via %s: %w", a, last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %v: %w (last error: %v)", addrs, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Service returns one service's detail (`dse services show`): its owner,
// incarnation, replicas and tables.
func (c *Client) Service(ctx context.Context, id string) (dse.ServiceDetail, error) {
	var out dse.ServiceDetail
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(id), nil, &out)
}

// Services lists every registered service.
func (c *Client) Services(ctx context.Context) ([]dse.DataServiceInfo, error) {
	var out []dse.DataServiceInfo
	return out, c.do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// CreateService creates an external service owned by the addressed node,
// kept on replicas nodes (0: the default).
func (c *Client) CreateService(ctx context.Context, id string, replicas int) (dse.DataServiceInfo, error) {
	var out dse.DataServiceInfo
	return out, c.do(ctx, http.MethodPost, "/v1/services", CreateServiceRequest{ID: id, Replicas: replicas}, &out)
}

// DeleteService removes a service from the cluster.
func (c *Client) DeleteService(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(id), nil, nil)
}

// Publish sets a table's content from a JSON array of rows.
func (c *Client) Publish(ctx context.Context, service, tbl string, rowsJSON []byte, snapshot bool) (dse.PublishResult, error) {
	var out dse.PublishResult
	path := fmt.Sprintf("/v1/services/%s/tables/%s?snapshot=%t", url.PathEscape(service), url.PathEscape(tbl), snapshot)
	return out, c.doBody(ctx, http.MethodPut, path, bytes.NewReader(rowsJSON), &out)
}

// Get returns a publisher's current table and its seqnum.
func (c *Client) Get(ctx context.Context, service, tbl string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/tables/"+url.PathEscape(tbl), nil, &out)
}

// Watch streams a table's events (one JSON object per line) to fn until ctx
// ends, fn returns an error, or the stream ends.
func (c *Client) Watch(ctx context.Context, service, tbl string, fn func(line []byte) error) error {
	resp, err := c.request(ctx, http.MethodGet, "/v1/watch/"+url.PathEscape(service)+"/"+url.PathEscape(tbl), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: watch stream: %v", dse.ErrUnavailable, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if code := resp.Trailer.Get(watchEndCode); code != "" {
		return fmt.Errorf("the node ended the watch: %w", dse.FromCode(code, resp.Trailer.Get(watchEndError)))
	}
	return fmt.Errorf("%w: the node ended the watch", dse.ErrUnavailable)
}

// RPC calls a service's action and returns the JSON result.
func (c *Client) RPC(ctx context.Context, service, action string, req RPCRequest) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodPost, "/v1/rpc/"+url.PathEscape(service)+"/"+url.PathEscape(action), req, &out)
}

// Drivers lists the drivers.
func (c *Client) Drivers(ctx context.Context) ([]DriverSummary, error) {
	var out []DriverSummary
	return out, c.do(ctx, http.MethodGet, "/v1/drivers", nil, &out)
}

// Driver returns one driver's info.
func (c *Client) Driver(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, http.MethodGet, "/v1/drivers/"+url.PathEscape(id), nil, &out)
}

// AddDatasource adds a datasource.
func (c *Client) AddDatasource(ctx context.Context, req AddDatasourceRequest) (dse.Datasource, error) {
	var out dse.Datasource
	return out, c.do(ctx, http.MethodPost, "/v1/datasources", req, &out)
}

// Datasources lists the datasources.
func (c *Client) Datasources(ctx context.Context, showSecrets bool) ([]dse.Datasource, error) {
	var out []dse.Datasource
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/datasources?show_secrets=%t", showSecrets), nil, &out)
}

// Datasource returns one datasource by id or name.
func (c *Client) Datasource(ctx context.Context, idOrName string, showSecrets bool) (dse.Datasource, error) {
	var out dse.Datasource
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/datasources/%s?show_secrets=%t", url.PathEscape(idOrName), showSecrets), nil, &out)
}

// DatasourceStatus tells where a datasource runs and how its source is.
func (c *Client) DatasourceStatus(ctx context.Context, idOrName string) (dse.DatasourceStatus, error) {
	var out dse.DatasourceStatus
	return out, c.do(ctx, http.MethodGet, "/v1/datasources/"+url.PathEscape(idOrName)+"/status", nil, &out)
}

// UpdateDatasource changes a datasource's config and/or enabled flag.
func (c *Client) UpdateDatasource(ctx context.Context, idOrName string, req UpdateDatasourceRequest) (dse.Datasource, error) {
	var out dse.Datasource
	return out, c.do(ctx, http.MethodPatch, "/v1/datasources/"+url.PathEscape(idOrName), req, &out)
}

// DeleteDatasource removes a datasource.
func (c *Client) DeleteDatasource(ctx context.Context, idOrName string) error {
	return c.do(ctx, http.MethodDelete, "/v1/datasources/"+url.PathEscape(idOrName), nil, nil)
}

// CreateToken makes a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, name, role string) (dse.NewToken, error) {
	var out dse.NewToken
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", CreateTokenRequest{Role: role, Name: name}, &out)
}

// Tokens lists the tokens.
func (c *Client) Tokens(ctx context.Context) ([]dse.TokenInfo, error) {
	var out []dse.TokenInfo
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}
