package dse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// DataServiceInfo is a service's metadata on the cluster, with exactly the
// keys of Congress's DataServiceInfo.MARSHALL_ATTRS.
type DataServiceInfo struct {
	ServiceID string `json:"service_id"`
	// NodeID is the node of the owner instance ("" while none is live).
	NodeID          string   `json:"node_id"`
	PublishedTables []string `json:"published_tables"`
	// SubscribedTables are the service's own published tables that have
	// at least one subscriber, cluster-wide, sorted: Congress's
	// _published_tables_with_subscriber. What the service itself
	// subscribes to is DataService.SubscriptionList.
	SubscribedTables []string `json:"subscribed_tables"`
	// RPCEndpointsInfo lists the service's RPC actions.
	RPCEndpointsInfo []string `json:"rpc_endpoints_info"`
}

// infoKeys are the MARSHALL_ATTRS, sorted.
var infoKeys = []string{"node_id", "published_tables", "rpc_endpoints_info", "service_id", "subscribed_tables"}

// ToDict returns the info as a map with exactly the five keys (to_dict).
func (i DataServiceInfo) ToDict() map[string]any {
	i.normalize()
	return map[string]any{
		"service_id":         i.ServiceID,
		"node_id":            i.NodeID,
		"published_tables":   toAnySlice(i.PublishedTables),
		"subscribed_tables":  toAnySlice(i.SubscribedTables),
		"rpc_endpoints_info": toAnySlice(i.RPCEndpointsInfo),
	}
}

func toAnySlice(in []string) []any {
	out := make([]any, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

// normalize turns nil lists into empty ones: the JSON shape has lists, never
// null.
func (i *DataServiceInfo) normalize() {
	if i.PublishedTables == nil {
		i.PublishedTables = []string{}
	}
	if i.SubscribedTables == nil {
		i.SubscribedTables = []string{}
	}
	if i.RPCEndpointsInfo == nil {
		i.RPCEndpointsInfo = []string{}
	}
}

// ToJSON returns the info as a JSON object (to_json).
func (i DataServiceInfo) ToJSON() ([]byte, error) {
	i.normalize()
	return json.Marshal(i)
}

// InfoFromDict builds an info from a map with exactly the five keys
// (from_dict); a missing or extra key is an error naming it.
func InfoFromDict(d map[string]any) (DataServiceInfo, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return DataServiceInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return InfoFromJSON(b)
}

// InfoFromJSON parses a JSON object with exactly the five keys (from_json).
func InfoFromJSON(data []byte) (DataServiceInfo, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return DataServiceInfo{}, fmt.Errorf("%w: DataServiceInfo is not a JSON object: %v", ErrInvalid, err)
	}
	var missing, extra []string
	for _, k := range infoKeys {
		if _, ok := raw[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range raw {
		if !slices.Contains(infoKeys, k) {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) > 0 {
		slices.Sort(extra)
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "missing keys "+strings.Join(missing, ", "))
		}
		if len(extra) > 0 {
			parts = append(parts, "unknown keys "+strings.Join(extra, ", "))
		}
		return DataServiceInfo{}, fmt.Errorf("%w: DataServiceInfo: %s", ErrInvalid, strings.Join(parts, "; "))
	}
	var i DataServiceInfo
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&i); err != nil {
		return DataServiceInfo{}, fmt.Errorf("%w: DataServiceInfo: %v", ErrInvalid, err)
	}
	i.normalize()
	return i, nil
}

// ServiceInfo returns one service's info from the registry.
func (n *Node) ServiceInfo(id string) (DataServiceInfo, error) {
	svc, ok := n.fsm.Service(id)
	if !ok {
		return DataServiceInfo{}, fmt.Errorf("%w: %q", ErrServiceNotFound, id)
	}
	info := DataServiceInfo{
		ServiceID:        id,
		NodeID:           svc.Owner,
		PublishedTables:  n.fsm.PublishedTables(id),
		RPCEndpointsInfo: n.endpointsWithAttached(svc), // attach.go: and attached actions
	}
	for _, sub := range n.fsm.SubscriptionsTo(id) { // sorted by table
		if k := len(info.SubscribedTables); k == 0 || info.SubscribedTables[k-1] != sub.Table {
			info.SubscribedTables = append(info.SubscribedTables, sub.Table)
		}
	}
	info.normalize()
	return info, nil
}

// ServicesInfo returns every registered service's info, sorted by id.
func (n *Node) ServicesInfo() []DataServiceInfo {
	var out []DataServiceInfo
	for _, svc := range n.fsm.Services() {
		if svc.Kind == KindWatch {
			continue
		}
		if info, err := n.ServiceInfo(svc.ID); err == nil {
			out = append(out, info)
		}
	}
	if out == nil {
		out = []DataServiceInfo{}
	}
	return out
}
