package links

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Published round trips between AWS regions, in ms: the averages of the
// measurements reproduced at
// https://acomputerscientistlearnsaws.blogspot.com/2017/04/aws-regions.html
// ("Latency Between AWS Global Regions"), the two directions averaged.
// Within one region, nodes in different availability zones are 0.25 to
// 3.4 ms apart (https://www.xkyle.com/Measuring-AWS-Region-and-AZ-Latency/):
// a link of 1 ms each way stands for that.
var regionRTT = map[[2]string]float64{
	{"us-east", "us-west"}: 72.2, {"us-east", "us-west-2"}: 87.8, {"us-east", "eu-west"}: 80.5,
	{"us-east", "eu-central"}: 88.6, {"us-east", "ap-northeast"}: 145.3, {"us-east", "ap-northeast-2"}: 177.5,
	{"us-east", "ap-southeast"}: 216.7, {"us-east", "ap-southeast-2"}: 229.9, {"us-east", "sa-east"}: 119.5,
	{"us-west", "us-west-2"}: 19.3, {"us-west", "eu-west"}: 153.2, {"us-west", "eu-central"}: 166.6,
	{"us-west", "ap-northeast"}: 102.5, {"us-west", "ap-northeast-2"}: 132.1, {"us-west", "ap-southeast"}: 174.0,
	{"us-west", "ap-southeast-2"}: 157.7, {"us-west", "sa-east"}: 192.7,
	{"us-west-2", "eu-west"}: 137.0, {"us-west-2", "eu-central"}: 159.5, {"us-west-2", "ap-northeast"}: 89.1,
	{"us-west-2", "ap-northeast-2"}: 118.3, {"us-west-2", "ap-southeast"}: 161.4, {"us-west-2", "ap-southeast-2"}: 162.1,
	{"us-west-2", "sa-east"}:  182.7,
	{"eu-west", "eu-central"}: 19.6, {"eu-west", "ap-northeast"}: 212.4, {"eu-west", "ap-northeast-2"}: 242.4,
	{"eu-west", "ap-southeast"}: 238.6, {"eu-west", "ap-southeast-2"}: 309.6, {"eu-west", "sa-east"}: 191.3,
	{"eu-central", "ap-northeast"}: 236.6, {"eu-central", "ap-northeast-2"}: 265.8, {"eu-central", "ap-southeast"}: 325.9,
	{"eu-central", "ap-southeast-2"}: 323.4, {"eu-central", "sa-east"}: 194.9,
	{"ap-northeast", "ap-northeast-2"}: 31.4, {"ap-northeast", "ap-southeast"}: 73.8, {"ap-northeast", "ap-southeast-2"}: 103.9,
	{"ap-northeast", "sa-east"}:        256.8,
	{"ap-northeast-2", "ap-southeast"}: 71.6, {"ap-northeast-2", "ap-southeast-2"}: 134.0, {"ap-northeast-2", "sa-east"}: 286.3,
	{"ap-southeast", "ap-southeast-2"}: 175.4, {"ap-southeast", "sa-east"}: 328.1,
	{"ap-southeast-2", "sa-east"}: 322.5,
}

// sameRegion is the one-way latency between two nodes of one region.
const sameRegion = time.Millisecond

// Regions lists the regions the preset knows.
func Regions() []string {
	seen := map[string]bool{}
	for k := range regionRTT {
		seen[k[0]], seen[k[1]] = true, true
	}
	var out []string
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// RegionLatency is the one-way latency of a link between regions a and
// b: half the published round trip, rounded to whole ms.
func RegionLatency(a, b string) (time.Duration, error) {
	for _, r := range []string{a, b} {
		if !known(r) {
			return 0, fmt.Errorf("links: region %q: the published figures cover %s", r, strings.Join(Regions(), ", "))
		}
	}
	if a == b {
		return sameRegion, nil
	}
	rtt, ok := regionRTT[[2]string{a, b}]
	if !ok {
		rtt, ok = regionRTT[[2]string{b, a}]
	}
	if !ok {
		return 0, fmt.Errorf("links: no figure between %s and %s", a, b)
	}
	return (time.Duration(rtt*float64(time.Millisecond)/2) + time.Millisecond/2).Truncate(time.Millisecond), nil
}

func known(r string) bool {
	for k := range regionRTT {
		if k[0] == r || k[1] == r {
			return true
		}
	}
	return false
}

// Geometry is the one-way latency between every pair of nodes: node i in
// regions[i].
func Geometry(regions []string) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(regions))
	for i := range regions {
		out[i] = make([]time.Duration, len(regions))
		for j := range regions {
			if i == j {
				continue
			}
			d, err := RegionLatency(regions[i], regions[j])
			if err != nil {
				return nil, err
			}
			out[i][j] = d
		}
	}
	return out, nil
}
